"""Chat answers after detokenization: reasoning and tool calls split out of the text.

`parse_chat_stream` sits on one choice's stream of `StreamDelta`s and rewrites each into the
content, reasoning and tool-call deltas the client sees:

- a reasoning parser (`--reasoning-parser`) moves `<think>` text to `reasoning`, and the last
  delta counts its tokens (`usage.completion_tokens_details.reasoning_tokens`);
- with `tools` and `tool_choice` `auto` (or unset), a tool-call parser (`--tool-call-parser`, or
  the one the chat template's markup points to) moves calls to `tool_calls`;
- with `tool_choice` `required` or a named function the engine was constrained to JSON
  (`requirements.tool_call_schema`), which becomes the calls at the end;
- `parallel_tool_calls: false` keeps the first call only; an answer with calls finishes with
  `tool_calls`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from dynamo.llm.errors import InvalidRequestError
from dynamo.llm.model_card import ModelDeploymentCard
from dynamo.llm.parsers import (
    ReasoningParser,
    ToolCallDelta,
    ToolCallParser,
    detect_tool_call_parser,
    forced_calls,
    reasoning_parser,
    tool_call_parser,
)
from dynamo.llm.protocols.openai import ChatCompletionRequest, NamedToolChoice
from dynamo.llm.stream_delta import StreamDelta


@dataclass(frozen=True, slots=True)
class OutputParsers:
    """The parsers a model's chat answers go through (names from `dynamo.llm.parsers`)."""

    tool_call_parser: str | None = None
    reasoning_parser: str | None = None

    def __post_init__(self) -> None:
        # Fail at start-up on a bad name, not on the first request.
        if self.tool_call_parser is not None:
            tool_call_parser(self.tool_call_parser)
        if self.reasoning_parser is not None:
            reasoning_parser(self.reasoning_parser)


def parsers_for(
    card: ModelDeploymentCard | None,
    tool_call_parser: str | None = None,
    reasoning_parser: str | None = None,
) -> OutputParsers:
    """The parsers of a model: the given names (the frontend's flags), else the ones its card
    names (`runtime_config`, where a worker publishes its own, as upstream does), else for tool
    calls the one the chat template's markup points to, when exactly one does."""
    runtime = card.runtime_config if card is not None else {}
    tool = tool_call_parser or runtime.get("tool_call_parser")
    if tool is None and card is not None:
        tool = detect_tool_call_parser(card.chat_template)
    return OutputParsers(tool, reasoning_parser or runtime.get("reasoning_parser"))


def _forced(request: ChatCompletionRequest) -> bool:
    return request.tool_choice == "required" or isinstance(request.tool_choice, NamedToolChoice)


def check_tools(request: ChatCompletionRequest, parsers: OutputParsers) -> None:
    """A 400 for tools this model cannot return: no parser to find the calls in its text."""
    if not request.tools or request.tool_choice == "none" or _forced(request):
        return
    if parsers.tool_call_parser is None:
        raise InvalidRequestError(
            "'tools' need a tool-call parser for this model: start the server with "
            "--tool-call-parser NAME (hermes, llama3_json, mistral, pythonic), or send "
            "tool_choice 'none'",
            param="tools",
            code="unsupported_parameter",
        )


class _ChoiceParser:
    """The parsers of one choice, and what they have produced so far."""

    def __init__(
        self,
        request: ChatCompletionRequest,
        parsers: OutputParsers,
        count_tokens: Callable[[str], int],
    ):
        self.request = request
        self.count_tokens = count_tokens
        self.reasoning: ReasoningParser | None = (
            reasoning_parser(parsers.reasoning_parser) if parsers.reasoning_parser else None
        )
        self.forced = _forced(request)
        tools_on = bool(request.tools) and request.tool_choice != "none" and not self.forced
        self.tools: ToolCallParser | None = (
            tool_call_parser(parsers.tool_call_parser)
            if tools_on and parsers.tool_call_parser
            else None
        )
        self.forced_text = ""
        self.reasoning_text = ""
        self.called = False

    def step(self, delta: StreamDelta) -> StreamDelta:
        text, reasoning = delta.text, ""
        if self.reasoning is not None:
            split = self.reasoning.feed(text)
            text, reasoning = split.content, split.reasoning
            if delta.finish_reason is not None:
                tail = self.reasoning.finish()
                text += tail.content
                reasoning += tail.reasoning
        calls: list[ToolCallDelta] = []
        if self.tools is not None:
            parsed = self.tools.feed(text)
            text, calls = parsed.content, parsed.calls
            if delta.finish_reason is not None:
                tail = self.tools.finish()
                text += tail.content
                calls += tail.calls
        elif self.forced:
            self.forced_text += text
            text = ""
            if delta.finish_reason is not None:
                try:
                    calls = forced_calls(self.forced_text, self.request.tool_choice)
                except ValueError:
                    text = self.forced_text  # cut short (max_tokens): give the text back
        if self.request.parallel_tool_calls is False:
            calls = [c for c in calls if c.index == 0]
        self.called = self.called or bool(calls)
        self.reasoning_text += reasoning
        finish = delta.finish_reason
        extra: dict[str, object] = {}
        if finish is not None:
            if self.called and finish == "stop":
                finish = "tool_calls"
            if self.reasoning is not None:
                extra["reasoning_tokens"] = (
                    self.count_tokens(self.reasoning_text) if self.reasoning_text else 0
                )
        return dataclasses.replace(
            delta,
            text=text,
            reasoning=reasoning,
            tool_calls=calls or None,
            finish_reason=finish,
            **extra,  # type: ignore[arg-type]
        )


def parse_chat_stream(
    stream: AsyncIterator[StreamDelta],
    request: ChatCompletionRequest,
    parsers: OutputParsers,
    count_tokens: Callable[[str], int],
) -> AsyncIterator[StreamDelta]:
    """One choice's deltas with reasoning and tool calls split out (see the module docstring);
    `stream` itself when there is nothing to split (no extra step per token)."""
    state = _ChoiceParser(request, parsers, count_tokens)
    if state.reasoning is None and state.tools is None and not state.forced:
        return stream
    return _parsed(stream, state)


async def _parsed(
    stream: AsyncIterator[StreamDelta], state: _ChoiceParser
) -> AsyncIterator[StreamDelta]:
    """Deltas left with nothing to say (markup held back) are dropped, except the last."""
    try:
        async for delta in stream:
            out = state.step(delta)
            if (
                out.text
                or out.reasoning
                or out.tool_calls
                or out.logprobs
                or out.annotations
                or out.finish_reason is not None
            ):
                yield out
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
