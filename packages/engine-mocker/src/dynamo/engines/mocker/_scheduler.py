"""The simulated vLLM v1 scheduler: waiting and running queues, chunked prefill, decode.

One `schedule()` plans a step: running requests first (each decoding request takes one token of
the `max_num_batched_tokens` budget, each prefilling one a chunk of what is left), then waiting
requests are admitted in arrival order while slots (`max_num_seqs`), budget and KV blocks last.
A new request takes its cached prefix blocks and allocates the rest of its prompt at once; it is
admitted only if that leaves `watermark` of the cache free. A decoding request that needs a new
block when none can be freed preempts the most recently admitted request (vLLM's recompute
preemption: its blocks go back, and it is prefilled again later, prompt plus output so far).

`complete(step)` applies the step: prefill chunks advance, requests whose prefill finished and
decoding requests each produce one token, full blocks are promoted and announced. Nothing here
sleeps or awaits: the engine times the step (`step_ms`) and drives the loop, and tests can run
steps directly.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dynamo.engines.mocker._kv_cache import KvCache, OutOfBlocks
from dynamo.engines.mocker._options import MockerOptions
from dynamo.llm.kv.hashing import block_hash, chain_hash, local_block_hashes, sequence_hashes


def prefill_ms(tokens: int) -> float:
    """Upstream mocker's prefill time for `tokens` new prompt tokens in a step (none: 0)."""
    if tokens <= 0:
        return 0.0
    return 4.209989e-7 * tokens * tokens + 1.518344e-2 * tokens + 16.50142


def decode_ms(kv_usage: float) -> float:
    """Upstream mocker's decode time at `kv_usage`: the decoding requests' tokens (prompt and
    output, shared prefixes counted once per request) over the cache's capacity in tokens,
    capped at 1; never under 1 ms."""
    usage = min(kv_usage, 1.0)
    return max(-25.74 * usage * usage + 54.01 * usage + 5.74, 1.0)


@dataclass(eq=False, slots=True)
class Sequence_:
    """One request inside the mocker."""

    request_id: str
    tokens: list[int]
    max_tokens: int
    #: Called with each new token id, then with None when the request is done.
    emit: Callable[[int | None], None]
    vocab: Sequence[int] = ()
    generated: int = 0
    #: Tokens whose KV is computed; the request decodes once it reaches `prefill_target`.
    computed: int = 0
    prefill_target: int = 0
    seq_hashes: list[int] = field(default_factory=list)
    has_partial: bool = False
    cancelled: bool = False
    #: Prompt tokens found in the prefix cache at admission (reported as `cached_tokens`).
    cached_tokens: int = 0
    #: The prompt's length (`tokens` grows by the output); 0 at construction means len(tokens).
    prompt_len: int = 0
    #: In the scheduler's running list (a flag, so that checking it costs no list scan).
    running: bool = False

    def __post_init__(self) -> None:
        if not self.prompt_len:
            self.prompt_len = len(self.tokens)

    @property
    def prefilling(self) -> bool:
        return self.computed < self.prefill_target


@dataclass(slots=True)
class Step:
    prefill: list[tuple[Sequence_, int]] = field(default_factory=list)
    decode: list[Sequence_] = field(default_factory=list)

    @property
    def prefill_tokens(self) -> int:
        return sum(n for _, n in self.prefill)


@dataclass(slots=True)
class SchedulerStats:
    prompt_tokens: int = 0
    cached_tokens: int = 0
    computed_prefill_tokens: int = 0
    preemptions: int = 0
    finished: int = 0


class MockScheduler:
    def __init__(self, opts: MockerOptions, kv: KvCache, rng: random.Random | None = None):
        self.opts = opts
        self.kv = kv
        self.rng = rng or random.Random(opts.seed)
        self.waiting: deque[Sequence_] = deque()
        self.running: list[Sequence_] = []
        self.stats = SchedulerStats()

    def add(self, seq: Sequence_) -> None:
        self.waiting.append(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    # -- planning ------------------------------------------------------------------------------

    def schedule(self) -> Step:
        step = Step()
        budget = self.opts.max_num_batched_tokens
        for seq in list(self.running):
            if not seq.running:  # preempted by an earlier one in this loop
                continue
            if seq.prefilling:
                chunk = min(seq.prefill_target - seq.computed, budget)
                if chunk <= 0:
                    continue
                if seq.computed + chunk == seq.prefill_target and not self._room_for_token(seq):
                    continue
                budget -= chunk
                step.prefill.append((seq, chunk))
            elif budget > 0 and self._room_for_token(seq):
                budget -= 1
                step.decode.append(seq)
        while self.waiting and budget > 0 and len(self.running) < self.opts.max_num_seqs:
            seq = self.waiting[0]
            if not self.fits_ever(len(seq.tokens)):
                self.finish(seq)  # its output outgrew the cache (see below)
                continue
            if not self._admit(seq):
                if not self.running:
                    # Nothing running will free a block: it has outgrown the whole cache (a
                    # real engine caps output at the model length); end it as `length`.
                    self.finish(seq)
                    continue
                break
            self.waiting.popleft()
            self.running.append(seq)
            seq.running = True
            chunk = min(seq.prefill_target - seq.computed, budget)
            if seq.computed + chunk == seq.prefill_target and not self._room_for_token(seq):
                break  # it preempted itself: it is first in line again
            budget -= chunk
            step.prefill.append((seq, chunk))
        return step

    def _room_for_token(self, seq: Sequence_) -> bool:
        """Make sure the next token of `seq` has a slot, preempting others if need be."""
        if len(seq.tokens) % self.kv.block_size:
            return True  # the partial block has room
        while True:
            try:
                self.kv.allocate_partial()
                seq.has_partial = True
                return True
            except OutOfBlocks:
                victim = self.running[-1]
                self.preempt(victim)
                if victim is seq:
                    return False

    def _admit(self, seq: Sequence_) -> bool:
        bs = self.kv.block_size
        kv = self.kv
        tokens = seq.tokens
        local = local_block_hashes(tokens, bs)
        seq_hashes = sequence_hashes(local)
        cached = 0
        for h in seq_hashes:
            if not kv.is_cached(h):
                break
            cached += 1
        total = -(-len(tokens) // bs)
        # Cached blocks held by nobody still count as available: taking them is not free.
        reused_inactive = sum(1 for h in seq_hashes[:cached] if not self._active(h))
        needed = total - cached + reused_inactive
        if kv.available_blocks - needed < self.opts.watermark_blocks:
            return False
        parent = None
        for i, h in enumerate(seq_hashes):
            kv.store(h, parent, tokens[i * bs : (i + 1) * bs])
            parent = h
        if len(tokens) % bs:
            kv.allocate_partial()
        seq.seq_hashes = seq_hashes
        seq.has_partial = bool(len(tokens) % bs)
        seq.prefill_target = len(tokens)
        # At least one token is computed, even on a full hit (vLLM recomputes the last one).
        seq.computed = min(cached * bs, len(tokens) - 1)
        seq.cached_tokens = seq.computed
        self.stats.prompt_tokens += len(tokens)
        self.stats.cached_tokens += seq.computed
        return True

    def _active(self, seq_hash: int) -> bool:
        return self.kv.refcount(seq_hash) > 0

    def fits_ever(self, prompt_len: int) -> bool:
        """Whether a prompt and one output token fit in an otherwise empty cache."""
        needed = -(-(prompt_len + 1) // self.kv.block_size)
        return needed <= self.kv.num_blocks - self.opts.watermark_blocks

    # -- applying -------------------------------------------------------------------------------

    def complete(self, step: Step) -> None:
        for seq, chunk in step.prefill:
            if not seq.running:
                continue
            seq.computed += chunk
            self.stats.computed_prefill_tokens += chunk
            if not seq.prefilling:
                self._next_token(seq)
        for seq in step.decode:
            if seq.running:
                self._next_token(seq)

    def _next_token(self, seq: Sequence_) -> None:
        vocab = seq.vocab or seq.tokens
        token = self.rng.choice(vocab)
        seq.tokens.append(token)
        seq.computed = len(seq.tokens)
        seq.prefill_target = seq.computed
        seq.generated += 1
        bs = self.kv.block_size
        if len(seq.tokens) % bs == 0:
            parent = seq.seq_hashes[-1] if seq.seq_hashes else None
            block = seq.tokens[-bs:]
            local = block_hash(block)
            h = local if parent is None else chain_hash(parent, local)
            self.kv.promote(h, parent, block)
            seq.seq_hashes.append(h)
            seq.has_partial = False
        seq.emit(token)
        if seq.generated >= seq.max_tokens:
            self.finish(seq)

    # -- leaving ---------------------------------------------------------------------------------

    def _release(self, seq: Sequence_) -> None:
        # Tail first, as vLLM does: the tail is then evicted first and shared prefixes last.
        for h in reversed(seq.seq_hashes):
            self.kv.release(h)
        if seq.has_partial:
            self.kv.release_partial()
        seq.seq_hashes = []
        seq.has_partial = False

    def finish(self, seq: Sequence_) -> None:
        """The request is done (length reached or cancelled): its blocks go back."""
        if seq.running:
            self.running.remove(seq)
            seq.running = False
            self._release(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        self.stats.finished += 1
        seq.emit(None)

    def preempt(self, seq: Sequence_) -> None:
        self.running.remove(seq)
        seq.running = False
        self._release(seq)
        seq.computed = 0
        seq.prefill_target = 0
        self.waiting.appendleft(seq)
        self.stats.preemptions += 1

    def drop_cancelled(self) -> None:
        for seq in [s for s in (*self.running, *self.waiting) if s.cancelled]:
            self.finish(seq)

    # -- timing and metrics ------------------------------------------------------------------------

    def step_ms(self, step: Step) -> float:
        """Simulated duration of a step, before `speedup_ratio`: upstream 1.6.1's pass
        (aisimulate-core 0.13, `VllmCore::execute_pass_internal`), prefill time then decode time.

        Prefill: the polynomial of the batch's new prompt tokens, computed as upstream does
        (requests with prompt tokens in the step times the integer mean of their prompt length
        reached minus the integer mean of what they had before; output tokens recomputed after a
        preemption are not prompt tokens). Decode: added when any request emits a token that is
        not the first token of a prefill that ran in this step (that one comes out of the prefill's
        forward pass): the decoding requests' tokens over the cache's capacity in tokens. So a
        prompt alone costs its prefill, and a prompt beside decoding requests its prefill plus a
        decode, as upstream's mixed pass does."""
        batch = before_sum = reached_sum = 0
        decoding = 0
        decode_tokens = 0
        for seq, chunk in step.prefill:
            before = min(seq.computed, seq.prompt_len)
            reached = min(seq.computed + chunk, seq.prompt_len)
            if reached > before:
                batch += 1
                before_sum += before
                reached_sum += reached
            if seq.generated and seq.computed + chunk == seq.prefill_target:
                # Recomputed after a preemption: its next token is not a prefill's first.
                decoding += 1
                decode_tokens += len(seq.tokens)
        for seq in step.decode:
            decoding += 1
            decode_tokens += len(seq.tokens)
        ms = prefill_ms(batch * (reached_sum // batch - before_sum // batch)) if batch else 0.0
        if decoding:
            ms += decode_ms(decode_tokens / (self.kv.num_blocks * self.kv.block_size))
        return ms


__all__ = ["MockScheduler", "SchedulerStats", "Sequence_", "Step", "decode_ms", "prefill_ms"]
