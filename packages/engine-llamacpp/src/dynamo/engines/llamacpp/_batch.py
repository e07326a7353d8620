"""The decode loop: one thread, one `llama_decode` per step over every running sequence.

Each step puts one token per decoding sequence into the batch, fills the rest of the step's token
budget (`n_batch`) with prompt chunks of sequences still prefilling (oldest first), decodes, and
samples one token for every sequence whose logits the step produced, each with its own sampler
chain. A sequence that finishes, is cancelled or is abandoned by its reader leaves at the next
step and frees its slot and its KV cells. New requests wait in arrival order for a free slot.

The thread delivers each step's deltas to the event loop with one `call_soon_threadsafe`; it
never blocks the event loop, and the event loop never waits for it except in `close`, which stops
it after the step in progress.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import llama_cpp

from dynamo.engines.llamacpp._logprobs import row_logprobs, token_entry
from dynamo.engines.llamacpp._native import NativeModel
from dynamo.engines.llamacpp._sampling import Sampler
from dynamo.engines.llamacpp._sequence import Sequence
from dynamo.engines.llamacpp._slots import SlotTable
from dynamo.llm.errors import EngineFailedError, RequestError

log = logging.getLogger(__name__)


def _deliver(pairs: list[tuple[asyncio.Queue[Any], Any]]) -> None:
    for queue, item in pairs:
        queue.put_nowait(item)


def _ban(ctx: Any, row: int, tokens: frozenset[int]) -> None:
    """Make `tokens` impossible to sample from batch row `row` (EOS before `min_tokens`)."""
    logits = llama_cpp.llama_get_logits_ith(ctx, row)
    for token in tokens:
        logits[token] = -math.inf


class BatchLoop:
    """Owns the native model from `start` on; every llama.cpp call happens on its thread."""

    def __init__(self, native: NativeModel, prefix_cache: bool = False):
        self.native = native
        self.prefix_cache = prefix_cache
        self.slots = SlotTable(native.n_parallel)
        self._waiting: collections.deque[Sequence] = collections.deque()
        self._running: list[Sequence] = []
        self._calls: collections.deque[tuple[Callable[[], Any], Future[Any]]] = collections.deque()
        self._outbox: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue[Any], Any]]] = {}
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="llamacpp-decode", daemon=True)

    def start(self) -> None:
        self._thread.start()

    # -- called from other threads --------------------------------------------------------

    def submit(self, seq: Sequence) -> None:
        self._waiting.append(seq)
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run `fn` on the decode thread between two steps."""
        future: Future[Any] = Future()
        self._calls.append((fn, future))
        self._wake.set()
        return future

    def stop(self) -> None:
        """Stop after the step in progress; unfinished requests end with an error."""
        self._stopping = True
        self._wake.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def in_flight(self) -> int:
        return len(self._running) + len(self._waiting)

    # -- the decode thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping:
                self._run_calls()
                self._admit()
                if not self._running:
                    self._flush()
                    self._wake.wait()
                    self._wake.clear()
                    continue
                self._step()
                self._flush()
        except Exception:
            log.exception("the llama.cpp decode loop failed")
        finally:
            gone = EngineFailedError("the llama.cpp engine shut down before the request finished")
            for seq in [*self._running, *self._waiting]:
                self._post(seq, gone)
            self._flush()
            self._run_calls()
            self.native.close()

    def _run_calls(self) -> None:
        while self._calls:
            fn, future = self._calls.popleft()
            try:
                future.set_result(fn())
            except Exception as e:
                future.set_exception(e)

    def _post(self, seq: Sequence, item: Any) -> None:
        self._outbox.setdefault(seq.loop, []).append((seq.queue, item))

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, {}
        for loop, pairs in outbox.items():
            # A closed event loop refuses: nobody is listening there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_deliver, pairs)

    def _admit(self) -> None:
        while self._waiting and self.slots.free:
            seq = self._waiting.popleft()
            if seq.cancelled():
                self._post(seq, {"token_ids": [], "finish_reason": "cancelled"})
                continue
            try:
                seq.sampler = Sampler(
                    seq.params, self.native.vocab, self.native.n_vocab, self.native.n_ctx
                )
            except RequestError as e:
                self._post(seq, e)
                continue
            # Without prefix caching no slot matches an empty prompt: the lowest free is taken.
            seq.slot, reused = self.slots.take(seq.prompt if self.prefix_cache else [])
            self.native.clear_seq(seq.slot, reused)
            seq.n_past = reused
            seq.pending = seq.prompt[reused:]
            self._running.append(seq)

    def _finish(self, seq: Sequence, item: Any) -> None:
        """End `seq` with `item` (a final delta or an error) and free its slot."""
        self._post(seq, item)
        self._running.remove(seq)
        if seq.sampler is not None:
            seq.sampler.close()
            seq.sampler = None
        if self.prefix_cache and not isinstance(item, BaseException):
            self.slots.give_back(seq.slot, seq.in_kv())
        else:
            self.native.clear_seq(seq.slot)
            self.slots.give_back(seq.slot)

    def _plan(self) -> list[tuple[Sequence, int]]:
        """How many pending tokens of each running sequence go into this step, in slot order:
        one per decoding sequence first, then prompt chunks, oldest request first."""
        budget = self.native.n_batch
        take: dict[int, int] = {}
        for seq in self._running:
            if not seq.prefilling:
                take[id(seq)] = 1
                budget -= 1
        for seq in self._running:
            if seq.prefilling and budget > 0:
                take[id(seq)] = n = min(budget, len(seq.pending))
                budget -= n
        ordered = sorted(self._running, key=lambda s: s.slot)
        return [(seq, take[id(seq)]) for seq in ordered if id(seq) in take]

    def _step(self) -> None:
        for seq in [s for s in self._running if s.cancelled()]:
            self._finish(seq, {"token_ids": [], "finish_reason": "cancelled"})
        plan = self._plan()
        if not plan:
            return
        batch = self.native.batch
        n = 0
        for seq, count in plan:
            for i in range(count):
                batch.token[n] = seq.pending[i]
                batch.pos[n] = seq.n_past + i
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq.slot
                batch.logits[n] = False
                n += 1
            last_chunk = count == len(seq.pending)
            seq.row = n - 1 if last_chunk else -1
            if last_chunk:
                batch.logits[n - 1] = True
        batch.n_tokens = n
        rc = llama_cpp.llama_decode(self.native.ctx, batch)
        if rc != 0:
            error = EngineFailedError(f"llama.cpp failed to decode a batch (llama_decode: {rc})")
            for seq, _ in plan:
                self._finish(seq, error)
            return
        ctx = self.native.ctx
        for seq, count in plan:
            seq.n_past += count
            del seq.pending[:count]
            if seq.row < 0:
                continue
            assert seq.sampler is not None
            logprobs = None
            if seq.logprobs is not None:
                logprobs = row_logprobs(ctx, seq.row, self.native.n_vocab)
            if len(seq.output) < seq.min_tokens and seq.eos:
                _ban(ctx, seq.row, seq.eos)
            token = seq.sampler.sample(ctx, seq.row)
            finish = seq.accept(token)
            if finish != "eos":
                delta: dict[str, Any] = {"token_ids": [token]}
                if logprobs is not None and seq.logprobs is not None:
                    chosen, top = token_entry(logprobs, token, seq.logprobs)
                    delta["log_probs"], delta["top_logprobs"] = [chosen], [top]
                self._post(seq, delta)
            if finish is not None:
                self._finish(seq, {"token_ids": [], "finish_reason": finish})
