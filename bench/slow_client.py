"""A client that reads slower than the server writes, beside one that keeps up: SSE events, text.

Starts `in=http out=echo_full` (no delay: the answer is the last message, a character an event,
as fast as the frontend can make it), then streams the same chat request (`--chars` characters,
echoed back) twice at a time, `--rounds` times: once read as fast as the client can, once by a
reader with a 4 KiB receive buffer that takes `--read-bytes` every `--read-every-ms`. Prints the
SSE events each client got and whether the slow one's text and finish reason were the fast
one's: the frontend merges pieces into fewer events only while a client's transport is paused
(past uvicorn's 64 KiB high-water mark, which on loopback comes only after the kernel's send
buffer of a few MiB is full).

    uv run python bench/slow_client.py --chars 40000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
from urllib.parse import urlsplit

import orjson
from _common import start_dynamo_run, stop


def _request(model: str, chars: int) -> bytes:
    text = "".join(chr(ord("a") + i % 26) for i in range(chars))
    return orjson.dumps(
        {"model": model, "stream": True, "messages": [{"role": "user", "content": text}]}
    )


async def _fetch(url: str, body: bytes, slow: tuple[int, float] | None) -> bytes:
    """The response's body (chunked encoding removed): read at once, or `slow` = (bytes per
    read, seconds between reads) through a small receive buffer."""
    parts = urlsplit(url)
    sock = socket.socket()
    if slow is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 16)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    )
    raw = b""
    while True:
        data = await reader.read(slow[0] if slow else 1 << 16)
        if not data:
            break
        raw += data
        if slow is not None:
            await asyncio.sleep(slow[1])
    writer.close()
    chunked = raw.partition(b"\r\n\r\n")[2]
    out = b""
    while True:
        size_line, _, chunked = chunked.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return out
        out, chunked = out + chunked[:size], chunked[size + 2 :]


def _summary(sse: bytes) -> tuple[int, str, str | None]:
    """SSE events with choices, the text, the finish reason."""
    events, text, finish = 0, [], None
    for block in sse.split(b"\n\n"):
        if not block.startswith(b"data: {"):
            continue
        event = orjson.loads(block[6:])
        for choice in event.get("choices") or ():
            events += 1
            text.append(choice["delta"].get("content") or "")
            finish = choice.get("finish_reason") or finish
    return events, "".join(text), finish


async def _round(url: str, body: bytes, slow: tuple[int, float]) -> dict:
    fast, slowed = await asyncio.gather(_fetch(url, body, None), _fetch(url, body, slow))
    f, s = _summary(fast), _summary(slowed)
    return {
        "fast_events": f[0],
        "slow_events": s[0],
        "characters": len(f[1]),
        "same_text": f[1] == s[1],
        "same_finish": f[2] == s[2],
        "finish": f[2],
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--chars", type=int, default=40000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--read-bytes", type=int, default=2048)
    p.add_argument("--read-every-ms", type=float, default=10.0)
    args = p.parse_args()
    proc, url = start_dynamo_run("echo_full", None, env={"DYN_TOKEN_ECHO_DELAY_MS": "0"})
    try:
        body = _request("bench", args.chars)
        slow = (args.read_bytes, args.read_every_ms / 1000)
        for _ in range(args.rounds):
            print(json.dumps(asyncio.run(_round(url, body, slow))), flush=True)
    finally:
        stop([proc])


if __name__ == "__main__":
    main()
