"""The request plane's messages: pure functions, no I/O (tested on their own).

A request goes to the instance's subject with a reply inbox; the response streams back to that
inbox as numbered frames, ending with an explicit `final` frame (or an `error` frame). A stream
that ends any other way is a failure, never a silently short answer.

    request   {"id": request_id, "data": <request dict>}
    frames    {"seq": n, "data": <response dict>}     n = 1, 2, ...
              {"seq": n, "hb": true}                   heartbeat while the handler is quiet
              {"seq": n, "final": true}
              {"seq": n, "error": message, "status"?: http status,
               "type"?: error type, "code"?: error code, "param"?: offending field}
    control   {"id": request_id, "inbox": reply inbox, "kind": "stop" | "kill" | "ping"}
              to the instance's control subject; the inbox names the request (ids may repeat);
              a ping, sent with the inbox as its reply subject, only checks that the worker
              still listens (NATS answers "no responders" to the inbox when it does not)

The worker's first frame is a heartbeat sent as soon as the request arrives (its ack).

Over the TCP request plane the same request and frames travel on one reused connection per
worker, each message behind a 9-byte header, so many streams share it:

    header    payload length (u32), stream id (u32), kind (u8)            big-endian
    kinds     REQUEST  caller -> worker   subject, a newline, the encoded request
              CONTROL  caller -> worker   b"stop" | b"kill"
              FRAME    worker -> caller   one response frame as above
"""

from __future__ import annotations

import struct
from typing import Any

import orjson

TCP_HEADER = struct.Struct(">IIB")
KIND_REQUEST = 1
KIND_CONTROL = 2
KIND_FRAME = 3
#: The caller's first message on a connection when the plane has a token (`DYN_TCP_RPC_TOKEN`).
KIND_AUTH = 4


def _default(value: Any) -> Any:
    """What orjson cannot write itself: pydantic models (engines may yield protocol objects)."""
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dump(mode="json", exclude_none=True)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _dumps(value: Any) -> bytes:
    # `default` runs only for types orjson does not know, so dicts cost nothing extra.
    return orjson.dumps(value, default=_default)


def encode_request(request_id: str, data: Any) -> bytes:
    return b'{"id":' + _dumps(request_id) + b',"data":' + _dumps(data) + b"}"


def decode_request(payload: bytes) -> tuple[str, Any]:
    msg = orjson.loads(payload)
    return msg["id"], msg["data"]


def data_frame(seq: int, data: Any) -> bytes:
    return b'{"seq":%d,"data":' % seq + _dumps(data) + b"}"


def final_frame(seq: int) -> bytes:
    return b'{"seq":%d,"final":true}' % seq


def heartbeat_frame(seq: int) -> bytes:
    return b'{"seq":%d,"hb":true}' % seq


def error_frame(
    seq: int,
    message: str,
    status: int | None = None,
    *,
    error_type: str | None = None,
    code: Any = None,
    param: str | None = None,
) -> bytes:
    """An error ending the stream. Beside the message, what the caller needs to pass the error
    on unchanged (an HTTP frontend: status, OpenAI `type`, `code` and `param`); absent when None."""
    body: dict[str, Any] = {"seq": seq, "error": message}
    for key, value in (("status", status), ("type", error_type), ("code", code), ("param", param)):
        if value is not None:
            body[key] = value
    return _dumps(body)


def decode_frame(payload: bytes) -> dict[str, Any]:
    return orjson.loads(payload)


def control(request_id: str, inbox: str, kind: str) -> bytes:
    return _dumps({"id": request_id, "inbox": inbox, "kind": kind})


def tcp_message(stream_id: int, kind: int, payload: bytes) -> bytes:
    """One TCP request-plane message: the header, then the payload."""
    return TCP_HEADER.pack(len(payload), stream_id, kind) + payload


def tcp_request(subject: str, request_id: str, data: Any) -> bytes:
    """The payload of a REQUEST message: which endpoint, then the request as over NATS."""
    return subject.encode() + b"\n" + encode_request(request_id, data)


def parse_tcp_request(payload: bytes) -> tuple[str, bytes]:
    """(subject, encoded request) of a REQUEST message's payload."""
    subject, _, request = payload.partition(b"\n")
    return subject.decode(), request


class TcpMessageTooLargeError(ValueError):
    """A peer announced a message over the limit: the connection is not ours to trust."""


class TcpMessageReader:
    """Cuts a TCP byte stream into messages (sans-IO: fed bytes, returns what is complete)."""

    __slots__ = ("_buffer", "_limit")

    def __init__(self, limit: int):
        self._buffer = bytearray()
        self._limit = limit

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        """The (stream id, kind, payload) of every message completed by `data`, in order."""
        buffer = self._buffer
        if buffer:
            buffer += data
            view: bytes | bytearray = buffer
        else:  # the usual case: a read that starts with a message is cut up where it lies
            view = data
        messages = []
        start = 0
        header_size = TCP_HEADER.size
        end = len(view)
        unpack = TCP_HEADER.unpack_from
        while end - start >= header_size:
            size, stream_id, kind = unpack(view, start)
            if size > self._limit:
                raise TcpMessageTooLargeError(
                    f"a {size}-byte message is over the {self._limit}-byte limit"
                )
            body = start + header_size
            if end - body < size:
                break
            messages.append((stream_id, kind, bytes(view[body : body + size])))
            start = body + size
        if view is data:
            if start < end:
                buffer += data[start:]
        elif start:
            del buffer[:start]
        return messages
