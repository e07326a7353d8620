"""Output parsers: tool calls and reasoning out of a model's text, streaming.

Each parser is made fresh per answer and fed the text as it comes (`feed`), then told the answer
ended (`finish`). They hold back only text that may be half of their markup, so they can sit
on a token stream without delaying plain text. Used by the chat pipeline and by every endpoint
that returns tool calls or reasoning.
"""

from dynamo.llm.parsers.reasoning import PARSERS as REASONING_PARSERS
from dynamo.llm.parsers.reasoning import ReasoningParser, Split, reasoning_parser
from dynamo.llm.parsers.tool_calls import PARSERS as TOOL_CALL_PARSERS
from dynamo.llm.parsers.tool_calls import (
    Parsed,
    ToolCallDelta,
    ToolCallParser,
    detect_tool_call_parser,
    forced_calls,
    merge_calls,
    tool_call_parser,
)

__all__ = [
    "REASONING_PARSERS",
    "TOOL_CALL_PARSERS",
    "Parsed",
    "ReasoningParser",
    "Split",
    "ToolCallDelta",
    "ToolCallParser",
    "detect_tool_call_parser",
    "forced_calls",
    "merge_calls",
    "reasoning_parser",
    "tool_call_parser",
]
