"""The TCP plane's per-stream frame buffers and the one silence timer per connection: a wait
ends with the frame, or without one once the connection has been silent for the wait's
allowance; bytes for any stream of the connection count as the worker being alive."""

from __future__ import annotations

import asyncio

from dynamo.runtime.tcp_streams import SilenceWatch, StreamFrames


class Connection:
    """The connection's side of the watch: its streams and when it last heard anything."""

    def __init__(self) -> None:
        self.streams: dict[int, StreamFrames] = {1: StreamFrames(), 2: StreamFrames()}
        self.heard = asyncio.get_running_loop().time()
        self.watch = SilenceWatch(asyncio.get_running_loop(), self.streams, lambda: self.heard)


async def test_a_frame_ends_the_wait_and_is_there_to_read():
    c = Connection()
    frames = c.streams[1]
    waiting = asyncio.ensure_future(c.watch.wait(frames, 5.0))
    await asyncio.sleep(0)
    frames.push({"seq": 1})
    assert await waiting is True
    assert list(frames.items) == [{"seq": 1}] and frames.waiter is None
    c.watch.close()


async def test_a_silent_connection_ends_every_waiting_stream_without_a_frame():
    c = Connection()
    short = asyncio.ensure_future(c.watch.wait(c.streams[1], 0.05))
    long = asyncio.ensure_future(c.watch.wait(c.streams[2], 0.2))
    assert await short is False
    assert await long is False  # its own, longer allowance: the timer was set again for it
    assert not c.streams[1].items and not c.streams[2].items


async def test_bytes_for_another_stream_keep_a_wait_alive():
    c = Connection()
    loop = asyncio.get_running_loop()
    c.heard = loop.time() + 0.2  # the worker keeps sending (other streams' frames) until then
    assert await c.watch.wait(c.streams[1], 0.05) is False
    assert loop.time() >= c.heard + 0.05 - 0.002  # not before the last byte's allowance ran out


async def test_a_cancelled_wait_leaves_no_waiter_behind():
    c = Connection()
    frames = c.streams[1]
    waiting = asyncio.ensure_future(c.watch.wait(frames, 5.0))
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.wait((waiting,))
    assert frames.waiter is None
    frames.push(None)  # the connection closing after it: nothing to wake, no error
    assert list(frames.items) == [None]
    c.watch.close()
