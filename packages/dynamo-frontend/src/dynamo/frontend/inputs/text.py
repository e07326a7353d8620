"""`in=text` (interactive multi-turn chat) and `in=stdin` (one prompt, one answer)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading

from dynamo.frontend.inputs import InputError
from dynamo.frontend.inputs.common import chat_turn
from dynamo.llm.errors import RequestError
from dynamo.llm.pipeline import ServedModel
from dynamo.runtime.context import Context


async def _answer(model: ServedModel, messages: list[dict], ignore_eos: bool) -> str:
    """Stream one answer to stdout and return its text."""
    context = Context()
    parts: list[str] = []
    try:
        # A request the model refuses up front (a 400 from its checks) fails here, not in the
        # stream: it is the same one-line error.
        stream = chat_turn(model, messages, context, ignore_eos=ignore_eos)
    except RequestError as e:
        sys.stdout.write(f"[error: {e.message}]\n")
        sys.stdout.flush()
        return ""
    try:
        async for delta in stream:
            if delta.text:
                parts.append(delta.text)
                sys.stdout.write(delta.text)
                sys.stdout.flush()
    except RequestError as e:
        sys.stdout.write(f"\n[error: {e.message}]")
    finally:
        context.stop_generating()
        await stream.aclose()  # type: ignore[attr-defined]
    sys.stdout.write("\n")
    sys.stdout.flush()
    return "".join(parts)


def _read_line_blocking(prompt: str) -> str:
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (gives input() line editing and up-arrow history)
    return input(prompt)


async def read_line(prompt: str) -> str:
    """`input()` off the event loop, on a daemon thread.

    Not `asyncio.to_thread`: its worker threads are joined at exit, so Ctrl-C at the prompt would
    hang until the user pressed Enter. A daemon thread blocked in `input()` does not hold up exit.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()

    def read() -> None:
        try:
            line = _read_line_blocking(prompt)
        except BaseException as e:  # EOFError on Ctrl-D, KeyboardInterrupt, ...
            loop.call_soon_threadsafe(_settle, future, None, e)
        else:
            loop.call_soon_threadsafe(_settle, future, line, None)

    threading.Thread(target=read, name="stdin-reader", daemon=True).start()
    return await future


def _settle(future: asyncio.Future, value: str | None, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


async def run_text(model: ServedModel, ignore_eos: bool) -> None:
    """Chat until Ctrl-D or Ctrl-C; the conversation so far goes with each turn."""
    print(f"Chatting with {model.name}. Ctrl-D or Ctrl-C to leave.", file=sys.stderr)
    messages: list[dict] = []
    while True:
        try:
            line = await read_line("User: ")
        except EOFError:
            print(file=sys.stderr)
            return
        if not line.strip():
            continue
        messages.append({"role": "user", "content": line})
        reply = await _answer(model, messages, ignore_eos)
        messages.append({"role": "assistant", "content": reply})


async def run_stdin(model: ServedModel, ignore_eos: bool) -> None:
    """Read all of stdin as one prompt and print the answer."""
    prompt = sys.stdin.read()
    if not prompt.strip():
        raise InputError("stdin was empty: pipe a prompt in, e.g. echo 'Hello' | dynamo-run ...")
    await _answer(model, [{"role": "user", "content": prompt}], ignore_eos)
