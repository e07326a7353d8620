"""Text completions through mistral.rs in slices of tokens, so that they stream and can be stopped.

mistral.rs's Python API neither streams nor cancels a completion: `send_completion_request`
blocks until the whole text is generated, and nothing stops it once sent. Sent whole, a
completion whose client went away would keep the engine generating to `max_tokens` (and keep
every other request from starting: the runner takes one call at a time). So a completion is a
chain of short requests, each generating at most `slice_tokens` tokens after the prompt plus the
text kept so far (mistral.rs's prefix cache holds the earlier tokens), with the request's context
checked between them; the text each one keeps goes to the client as one chunk.

The next request sees the text, not the tokens: re-tokenized, a slice's end may merge into other
tokens than the model wrote (SmolLM2 writes "\\n" "\\n", which reads back as one "\\n\\n"), and the
model then continues differently than one request would. So a slice keeps its text only up to
its last run of whitespace, where a word ends and no tokenizer merges across; the rest is
generated again by the next slice, the same under greedy sampling. `max_tokens` counts the kept
text's tokens (the tokenizer's count of the prompt with and without it).

Stop strings go to mistral.rs, which stops inside a slice, and are matched here as well, since one
that spans two slices is seen by neither.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from dynamo.llm.stop_strings import StopStringJail

#: Tokens a slice generates at most: how far past a cancellation the engine may still generate.
SLICE_TOKENS = 16


@dataclass(slots=True)
class Piece:
    """Text for the client, with the usage so far and, on the last piece, the finish reason."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int


def kept_length(text: str) -> int:
    """How much of a slice's text the next slice may continue from: up to its last whitespace
    that follows other text (all of it when there is none: progress matters more)."""
    for i in range(len(text) - 1, 0, -1):
        if text[i].isspace() and not text[i - 1].isspace():
            return i
    return len(text)


def sliced_completion(
    send: Callable[[str, int], Any],
    count: Callable[[str], int],
    prompt: str,
    max_tokens: int | None,
    stops: list[str] | None,
    stopped: Callable[[], bool],
    context_length: int | None = None,
    slice_tokens: int = SLICE_TOKENS,
) -> Iterator[Piece]:
    """Yield the `Piece`s of one completion. `send(prompt, max_tokens)` returns mistral.rs's
    `CompletionResponse` for one slice (None: stopped while waiting for its turn); `count(text)`
    is the number of tokens in `text`. Ends without a last piece once `stopped()` is true.
    `context_length` (the model's, when known) ends a completion with `length` where one request
    would have, instead of sending a prompt mistral.rs refuses."""
    jail = StopStringJail(stops or ())
    kept = ""
    base = count(prompt)
    used = 0  # tokens of `kept`
    prompt_tokens: int | None = None
    while not stopped():
        want = slice_tokens if max_tokens is None else min(slice_tokens, max_tokens - used)
        if context_length is not None:
            want = min(want, context_length - base - used)
        if want <= 0 and prompt_tokens is not None:
            yield Piece(jail.release(), "length", prompt_tokens, used)
            return
        response = send(prompt + kept, max(want, 0))
        if response is None or stopped():
            return
        choice, usage = response.choices[0], response.usage
        if prompt_tokens is None:
            prompt_tokens = int(usage.prompt_tokens)  # `send` is untyped: say what it gives
        total = used + usage.completion_tokens
        # A slice that used all its tokens ends with "length": the completion goes on unless
        # that was `max_tokens`, or the slice got fewer than it asked for (the model's context).
        finish = choice.finish_reason
        if finish == "length" and usage.completion_tokens == want:
            finish = "length" if max_tokens is not None and total >= max_tokens else None
        if finish is None and not choice.text:
            finish = "length"  # tokens that write no text (skipped special tokens): no way on
        text = choice.text if finish is not None else choice.text[: kept_length(choice.text)]
        out, matched = jail.feed(text)
        if matched is not None:
            finish = "stop"
        if finish is not None:
            yield Piece(out + jail.release(), finish, prompt_tokens, total)
            return
        kept += text
        used = count(prompt + kept) - base
        if out:
            yield Piece(out, None, prompt_tokens, used)
