"""Reasoning out of a model's text, streaming: `deepseek_r1` and `qwen3` (`<think>...</think>`).

Fed the answer's text in any pieces, a parser splits it into `reasoning` (OpenAI-compatible
servers' `reasoning_content`) and `content`, holding back text that may be half of a think tag.

- `qwen3`: reasoning only when the answer opens with `<think>` (after whitespace); it ends at
  `</think>`. An answer without the tag is all content (Qwen3 with thinking switched off).
- `deepseek_r1`: the answer starts inside the reasoning (DeepSeek-R1's template, like Qwen3's
  thinking-only models, writes `<think>` into the prompt); a leading `<think>` is dropped, and
  everything up to `</think>` is reasoning. An answer that never closes it is all reasoning, as
  vLLM's parser has it (the model ran out of tokens while thinking).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from dynamo.llm.parsers._holdback import partial_suffix

THINK_START = "<think>"
THINK_END = "</think>"


@dataclass(slots=True)
class Split:
    reasoning: str = ""
    content: str = ""


class ReasoningParser:
    """`<think>` reasoning, then content."""

    name: ClassVar[str]
    #: Whether the answer is reasoning before any tag is seen.
    starts_in_reasoning: ClassVar[bool]

    def __init__(self) -> None:
        self._buf = ""
        # "open": before the answer's first text is known; "reasoning"; "content".
        self._state = "open"
        self._skip_space = False

    def feed(self, text: str) -> Split:
        out = Split()
        self._buf += text
        while self._buf:
            if self._state == "open" and not self._opening():
                break
            if self._skip_space:
                # Whitespace right after a think tag belongs to neither side.
                self._buf = self._buf.lstrip()
                if not self._buf:
                    break
                self._skip_space = False
            if self._state == "reasoning":
                at = self._buf.find(THINK_END)
                if at == -1:
                    keep = partial_suffix(self._buf, (THINK_END,))
                    out.reasoning += self._buf[: len(self._buf) - keep]
                    self._buf = self._buf[len(self._buf) - keep :]
                    break
                out.reasoning += self._buf[:at]
                self._buf = self._buf[at + len(THINK_END) :]
                self._state = "content"
                self._skip_space = True
                continue
            if self._state == "content":
                out.content += self._buf
                self._buf = ""
        return out

    def finish(self) -> Split:
        """The answer ended: held-back text goes where the parser stands."""
        out = Split()
        held, self._buf = self._buf, ""
        if self._state == "open":
            if self.starts_in_reasoning:
                out.reasoning = held.removeprefix(THINK_START) if held.strip() else ""
            else:
                out.content = held
        elif self._state == "reasoning":
            out.reasoning = held
        elif self._state == "content":
            out.content = held
        return out

    def _opening(self) -> bool:
        """Decide, from the answer's first text, whether it opens with reasoning; False while
        it cannot tell yet."""
        stripped = self._buf.lstrip()
        if not stripped or (THINK_START.startswith(stripped) and stripped != THINK_START):
            return False
        if stripped.startswith(THINK_START):
            self._buf = stripped[len(THINK_START) :]
            self._state = "reasoning"
            self._skip_space = True
        else:
            self._state = "reasoning" if self.starts_in_reasoning else "content"
        return True


class DeepSeekR1Parser(ReasoningParser):
    name = "deepseek_r1"
    starts_in_reasoning = True


class Qwen3Parser(ReasoningParser):
    name = "qwen3"
    starts_in_reasoning = False


PARSERS: dict[str, type[ReasoningParser]] = {p.name: p for p in (DeepSeekR1Parser, Qwen3Parser)}


def reasoning_parser(name: str) -> ReasoningParser:
    """A fresh parser for one answer; `name` is one of `PARSERS`."""
    try:
        return PARSERS[name]()
    except KeyError:
        raise ValueError(
            f"unknown reasoning parser '{name}'; choose one of: {', '.join(sorted(PARSERS))}"
        ) from None
