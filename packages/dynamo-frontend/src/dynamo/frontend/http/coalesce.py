"""Deltas merged while a client reads slower than its answer is made (issue 14 item 3).

A streamed answer is one SSE event per piece. When the client keeps up, every piece is sent as
it comes, unchanged. When it does not, the server's transport holds what the client has not
read, and past its high-water mark uvicorn's `send` waits until the client has caught up (its
flow control). Meanwhile the pieces that keep coming would each wait there in turn as an event
of their own; instead they are merged into one piece (text and reasoning joined, the token
counts and finish of the latest), sent once the client has read what was already written. The
client gets the same text and the same finish in fewer events, and the server writes fewer
events to a client that is behind anyway. A piece is merged only with the next pieces of the
same choice that carry no tool calls, annotations or prompt log probabilities, so nothing that
needs a piece of its own is changed.

The condition is the client's own transport, never the engine's pace: a fast client's events
are never merged, however fast the engine is.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from dynamo.frontend.http.event_writer import ClientFlow
from dynamo.llm.stream_delta import StreamDelta


def mergeable(delta: StreamDelta, later: StreamDelta) -> bool:
    """Whether `later` can be sent as part of `delta`'s event."""
    return (
        delta.finish_reason is None
        and later.index == delta.index
        and not (delta.tool_calls or later.tool_calls)
        and later.annotations is None
        and later.prompt_logprobs is None
    )


def merge(delta: StreamDelta, later: StreamDelta) -> StreamDelta:
    """One piece saying what `delta` then `later` say (`mergeable` ones)."""
    logprobs = None
    if delta.logprobs or later.logprobs:
        logprobs = [*(delta.logprobs or ()), *(later.logprobs or ())]
    return StreamDelta(
        delta.text + later.text,
        later.finish_reason,
        later.prompt_tokens,
        later.completion_tokens,
        later.stop_reason,
        delta.index,
        delta.reasoning + later.reasoning,
        None,
        logprobs,
        delta.prompt_logprobs,
        delta.annotations,
        later.cached_tokens if later.cached_tokens is not None else delta.cached_tokens,
        later.reasoning_tokens,
    )


async def _next(stream: AsyncIterator[StreamDelta]) -> StreamDelta | None:
    try:
        return await stream.__anext__()
    except StopAsyncIteration:
        return None


#: What follows a merged piece: nothing yet, a piece that could not be merged, or the pull of
#: the next piece, still running (its result is the piece, or None at the end of the stream).
Next = StreamDelta | asyncio.Task[StreamDelta | None] | None


async def coalesce(
    delta: StreamDelta, stream: AsyncIterator[StreamDelta], flow: ClientFlow
) -> tuple[StreamDelta, Next]:
    """`delta` with the pieces `stream` yields merged into it, until the client has caught up
    (`flow` drained), the answer ends, or a piece cannot be merged; and what follows it. No
    pull of `stream` is left running unless it is returned."""
    drained = asyncio.ensure_future(flow.drain())
    pull: asyncio.Task[StreamDelta | None] | None = None
    try:
        while True:
            if pull is None:
                pull = asyncio.ensure_future(_next(stream))
            await asyncio.wait((drained, pull), return_when=asyncio.FIRST_COMPLETED)
            if pull.done():
                later = pull.result()
                pull = None
                if later is None:
                    return delta, None
                if not mergeable(delta, later):
                    return delta, later
                delta = merge(delta, later)
                if delta.finish_reason is not None:
                    return delta, None
            if drained.done():
                running, pull = pull, None
                return delta, running
    finally:
        drained.cancel()
        if pull is not None:  # failed or cancelled: stop the pull before anyone closes `stream`
            await stop_pull(pull)


async def stop_pull(pull: Any) -> None:
    """Cancel a pull left running (the client left) and wait until it has let go of the
    stream, which can then be closed."""
    if isinstance(pull, asyncio.Task) and not pull.done():
        pull.cancel()
        await asyncio.wait((pull,))
