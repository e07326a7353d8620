"""bench/kv_routing.py's workloads on simulated time: the real KV router and mocker.

No processes, no network, no sleeping: N `MockScheduler`s (the mocker's own scheduler, KV cache
and step timings) and one `KvRouter` share a virtual clock, so a run takes seconds, gives the
same numbers for the same seed, and is untouched by the machine's load (bench/kv_routing.py's
times move by 10-30% between runs on a loaded 2-core machine). What it leaves out is the
serving path: a fixed `--overhead-ms` stands for it in every time to first token, and KV events
and load metrics reach the router at the end of the step that produced them.

It is for telling where a router loses time, request by request. Per mode it prints TTFT
p50/p90/p99, the hit rate (cached prompt tokens the workers reused / prompt tokens), the kv /
round-robin p50 ratio, the workers' busy share (time in a step / run time) and a breakdown: the
cache hits by what their worker was doing when they were routed (idle, decoding N requests, a
prefill queued ahead), and the misses, each with its count and TTFT p50. `--trace` adds one JSON
line per request: every worker's predicted TTFT, overlap, queued prefill tokens and active
blocks, the worker chosen, the cached tokens it reused and the TTFT.

`kv:oracle` is the bound on what a better prediction could give: at each routing decision the
whole simulated deployment is copied once per worker, the request is sent to that worker on the
copy and played forward to its first token, and the request goes, for real, to the worker where
that came soonest (later requests on a copy are routed by the predicted cost). So it routes as a
router that knew every choice's time to first token exactly would, one request at a time; its
`oracle_as_played` is the share of requests whose real first token came when it did on the copy.
It costs a copy of the deployment per worker per request (minutes, not seconds).

Prompts are synthetic token ids of bench/kv_routing.py's sizes (a document of W words is
~3.9 W SmolLM2 tokens, each question 14 more), Zipf-spread with `--tenant-skew` as there.
Conversations of `--turns` turns resend their history (the previous turns' questions and the
mocker's replies) as there; open loop at `--rate` conversations/s, or closed loop with
`--rate 0` and `--concurrency` conversations in flight (workloads A and B). Output tokens/s is
the output tokens over the simulated time from the first arrival to the last token.

    uv run python bench/kv_routing_sim.py --documents 48 --questions 4 --words 1000 \
        --num-gpu-blocks 512 --tenant-skew 1 --rate 12 --modes kv:predicted,kv:blocks,round-robin
    uv run python bench/kv_routing_sim.py --documents 16 --questions 6 --turns 2 --words 600 \
        --num-gpu-blocks 16384 --tenant-skew 0 --rate 0 --concurrency 8       # workload A
"""

from __future__ import annotations

import argparse
import copy
import heapq
import itertools
import json
import random
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from kv_routing import poisson_arrivals, questions_per_document

from dynamo.engines.mocker import KvCache, MockerOptions, MockScheduler
from dynamo.engines.mocker._scheduler import Sequence_, Step
from dynamo.llm.kv.hashing import local_block_hashes, sequence_hashes
from dynamo.llm.kv.publisher import KvEventPublisher
from dynamo.llm.kv.router import ROUTER_COSTS, KvRouter

#: SmolLM2 tokens per word of bench/kv_routing.py's documents.
TOKENS_PER_WORD = 3.9
#: Prefill tokens queued on a worker (beyond the request's own) that count as "a prefill ahead".
QUEUED_PREFILL = 256


class _Sink(KvEventPublisher):
    """The mocker's KV events, straight into the router's indexer: the real publisher's events
    (its block conversion, partial-block and hash rules), handed over at once on the simulated
    clock instead of queued for an async send. No router (round-robin modes): dropped."""

    def __init__(self, worker: int, router: KvRouter | None, block_size: int) -> None:
        super().__init__(_no_send, "sim", "backend", worker, block_size)
        self.router = router

    def _enqueue(self, payload: bytes, change: Callable[[], None]) -> None:
        # The held blocks (for a later router's sync) are not kept: no router starts later here.
        if self.router is not None:
            self.router.on_event(payload)


async def _no_send(subject: str, payload: bytes) -> None:
    raise AssertionError("the simulation hands events to the router directly")


@dataclass
class _Worker:
    sched: MockScheduler
    busy: bool = False
    busy_s: float = 0.0
    #: Requests waiting, as of the last step's end (what the load metrics would say).
    waiting: int = 0


@dataclass
class _Conversation:
    """A document and the questions asked about it, one turn after the other."""

    document: int
    doc_tokens: list[int]
    questions: list[list[int]]
    #: When its first turn is sent (open loop); closed loop: when a slot frees.
    arrival: float = 0.0


@dataclass
class _Request:
    rid: str
    arrival: float
    document: int
    tokens: list[int]
    conversation: _Conversation | None = None
    #: Which of its conversation's turns this is (0 = the first).
    turn: int = 0
    worker: int = 0
    first: float | None = None
    seq: Sequence_ | None = None
    #: What the worker was doing when the request was routed to it (see `_state`).
    state: str = ""
    #: The tokens the mocker generated, and when the last one came.
    reply: list[int] = field(default_factory=list)
    done: float = 0.0
    trace: dict[str, Any] = field(default_factory=dict)


def workload(args: argparse.Namespace) -> list[_Conversation]:
    """bench/kv_routing.py's conversations in shuffled order, with Poisson arrivals when open
    loop. One turn: the same random draws as before conversations had turns, so a seed's
    single-turn workload is unchanged."""
    rng = random.Random(args.seed)
    n_doc = int(args.words * TOKENS_PER_WORD)
    docs = [[rng.randrange(1, 49_000) for _ in range(n_doc)] for _ in range(args.documents)]
    conversations: list[_Conversation] = []
    for d, doc in enumerate(docs):
        for _ in range(questions_per_document(args, d)):
            questions = [[rng.randrange(1, 49_000) for _ in range(14)] for _ in range(args.turns)]
            conversations.append(_Conversation(d, doc, questions))
    rng.shuffle(conversations)
    if args.rate > 0:
        for c, at in zip(
            conversations, poisson_arrivals(len(conversations), args.rate, rng), strict=True
        ):
            c.arrival = at
    return conversations


def _state(sched: MockScheduler) -> str:
    """`prefill ahead`, `decoding N` or `idle`: what a request routed to this worker meets."""
    queued = sum(s.prefill_target - s.computed for s in sched.running if s.prefilling)
    queued += sum(len(s.tokens) for s in sched.waiting)
    if queued > QUEUED_PREFILL:
        return "prefill ahead"
    decoding = sum(1 for s in sched.running if not s.prefilling)
    return f"decoding {min(decoding, 3)}{'+' if decoding >= 3 else ''}" if decoding else "idle"


def _predictions(router: KvRouter, r: _Request, ids: list[int], workers: list[_Worker]) -> list:
    """Per worker: [predicted ms, overlap tokens, queued prefill tokens, active blocks]."""
    seq = sequence_hashes(local_block_hashes(r.tokens, router.block_size))
    scores = router.indexer.find_sequence_matches(seq, with_tree_sizes=False).scores
    sched = router.scheduler
    costs, features = sched.predicted_ttfts(
        ids, len(r.tokens), seq, scores, router.ttft, {w: workers[w].waiting for w in ids}
    )
    return [
        [
            round(c * 1000, 1),
            sched.overlap(w, scores.get(w, 0), seq) * router.block_size,
            sched.load(w)["active_prefill_tokens"],
            round(f.active_blocks),
        ]
        for w, c, f in zip(ids, costs, features, strict=True)
    ]


class Simulation:
    """One router mode's replay: the workers, the router, the pending events and the requests.

    A class rather than one function so that `kv:oracle` can copy the whole state at a routing
    decision (`copy.deepcopy`), play each choice forward on the copy and keep the best."""

    def __init__(self, mode: str, args: argparse.Namespace) -> None:
        router_mode, _, cost = mode.partition(":")
        self.args = args
        self.router_mode = router_mode
        #: `kv:oracle`: each request goes where, played forward, its first token comes soonest.
        self.oracle = cost == "oracle"
        self.opts = MockerOptions(num_gpu_blocks=args.num_gpu_blocks, block_size=args.block_size)
        self.now = 0.0
        self.workers: list[_Worker] = []
        self.router: KvRouter | None = None
        if router_mode == "kv" and cost not in ("", "oracle", *ROUTER_COSTS):
            raise SystemExit(f"unknown mode {mode!r}: the KV cost is predicted, blocks or oracle")
        if router_mode == "kv":
            self.router = KvRouter(
                args.block_size,
                temperature=args.temperature,
                seed=args.seed,
                cost="predicted" if self.oracle else cost or "predicted",
                waiting=self._waiting,
                capacity=self._capacity,
                clock=self._clock,
            )
        elif router_mode not in ("round-robin", "random") or cost:
            raise SystemExit(
                f"unknown mode {mode!r}: kv[:predicted|blocks|oracle], round-robin or random"
            )
        for w in range(args.workers):
            kv = KvCache(
                self.opts.num_gpu_blocks,
                self.opts.block_size,
                _Sink(w, self.router, self.opts.block_size),
            )
            self.workers.append(_Worker(MockScheduler(self.opts, kv, random.Random(args.seed + w))))
        self.ids = list(range(args.workers))
        conversations = workload(args)
        #: The documents' and questions' token lists, by id: read, never changed, so a copy
        #: for `play_forward` shares them (with each request's prompt) instead of copying them.
        self._never_changed: dict[int, Any] = {
            id(x): x for c in conversations for x in (c.doc_tokens, *c.questions)
        }
        self.requests: list[_Request] = []
        self.order = itertools.count()
        self.events: list[
            tuple[float, int, _Request | _Conversation | tuple[int, Step | None]]
        ] = []
        self.overhead = args.overhead_ms / 1000
        self.cap = args.concurrency if args.concurrency > 0 else len(conversations)
        #: Conversations that arrived while `cap` were in flight, in arrival order.
        self.queued: deque[_Conversation] = deque()
        self.in_flight = 0
        self.pick = random.Random(args.seed)
        if args.rate > 0:
            self.events = [(c.arrival, next(self.order), c) for c in conversations]
            heapq.heapify(self.events)
        else:
            for c in conversations[: self.cap]:
                self.begin(c)
            self.queued.extend(conversations[self.cap :])

    # What the router reads from the simulated deployment.
    def _clock(self) -> float:
        return self.now

    def _waiting(self, w: int) -> int:
        return self.workers[w].waiting

    def _capacity(self, w: int) -> int:
        return self.opts.num_gpu_blocks

    def send(self, c: _Conversation, turn: int, history: list[int]) -> None:
        r = _Request(
            str(len(self.requests)), self.now, c.document, history + c.questions[turn], c, turn
        )
        self.requests.append(r)
        heapq.heappush(self.events, (self.now + self.overhead, next(self.order), r))

    def begin(self, c: _Conversation) -> None:
        self.in_flight += 1
        self.send(c, 0, c.doc_tokens)

    def finished(self, r: _Request) -> None:
        """`r`'s last token: its conversation's next turn, or the next conversation."""
        c = r.conversation
        if c is not None and r.turn + 1 < len(c.questions):
            self.send(c, r.turn + 1, r.tokens + r.reply)
            return
        self.in_flight -= 1
        if self.queued:
            self.begin(self.queued.popleft())

    def start_step(self, w: int) -> None:
        wk = self.workers[w]
        sched = wk.sched
        sched.drop_cancelled()
        wk.busy = sched.has_work()
        if not wk.busy:
            return
        step: Step | None = sched.schedule()
        seconds = sched.step_ms(step) / 1000 if step.prefill or step.decode else 0.05
        if not (step.prefill or step.decode):
            step = None  # blocked on KV space: look again later, as the engine does
        else:
            wk.busy_s += seconds
        heapq.heappush(self.events, (self.now + seconds, next(self.order), (w, step)))

    def emit(self, r: _Request, token: int | None) -> None:
        if token is None:
            r.done = self.now
            if self.router is not None:
                self.router.free(r.rid)
            self.finished(r)
            return
        r.reply.append(token)
        if r.first is None:
            r.first = self.now
            if self.router is not None:
                self.router.mark_prefill_completed(r.rid)

    def route(self, r: _Request, only: int | None = None) -> None:
        """Send `r` to a worker: the router's choice, or `only`."""
        router, args = self.router, self.args
        if router is not None:
            if args.trace:
                r.trace["workers"] = _predictions(router, r, self.ids, self.workers)
            if self.oracle and only is None:
                r.trace["played_ms"] = played = self.play_forward(r)
                only = min(self.ids, key=lambda w: played[w])
            r.worker, overlap = router.select(r.tokens, self.ids if only is None else [only], r.rid)
            r.trace["overlap_tokens"] = overlap * args.block_size
        elif self.router_mode == "round-robin":
            r.worker = int(r.rid) % args.workers
        else:
            r.worker = self.pick.randrange(args.workers)
        sched = self.workers[r.worker].sched
        r.state = _state(sched)
        r.seq = Sequence_(
            r.rid, list(r.tokens), args.max_tokens, partial(self.emit, r), r.tokens[:64]
        )
        sched.add(r.seq)
        if not self.workers[r.worker].busy:
            self.start_step(r.worker)

    def play_forward(self, r: _Request) -> list[float]:
        """Per worker: `r`'s time to first token (ms) if it went there, played forward on a
        copy of the deployment whose later requests the predicted cost routes. Token lists
        that never change after they are made are shared with the copy, not copied."""
        shared = dict(self._never_changed)
        shared.update((id(q.tokens), q.tokens) for q in self.requests)
        played = []
        for w in self.ids:
            fork, rc = copy.deepcopy((self, r), dict(shared))
            fork.oracle = False
            fork.route(rc, only=w)
            fork.run(until=lambda rc=rc: rc.first is not None)
            played.append(round(_ms(rc), 1))
        return played

    def run(self, until: Callable[[], bool] | None = None) -> None:
        """Process events in time order until none is left, or `until()` holds."""
        events = self.events
        while events and not (until is not None and until()):
            self.now, _, item = heapq.heappop(events)
            if isinstance(item, _Request):
                self.route(item)
                continue
            if isinstance(item, _Conversation):
                if self.in_flight < self.cap:
                    self.begin(item)
                else:
                    self.queued.append(item)
                continue
            w, step = item
            sched = self.workers[w].sched
            if step is not None:
                sched.complete(step)
            sched.kv.flush_events()
            self.workers[w].waiting = len(sched.waiting)
            self.start_step(w)


def simulate(mode: str, args: argparse.Namespace) -> tuple[dict, list[_Request]]:
    """Replay the workload through one router mode; the summary and the requests."""
    sim = Simulation(mode, args)
    sim.run()
    requests = sim.requests
    return summary(mode, requests, sim.workers, max(r.done for r in requests), sim.router), requests


def _ms(r: _Request) -> float:
    assert r.first is not None
    return (r.first - r.arrival) * 1000


def summary(
    mode: str, requests: list[_Request], workers: list[_Worker], end: float, router: KvRouter | None
) -> dict:
    ttfts = sorted(_ms(r) for r in requests)
    q = statistics.quantiles(ttfts, n=100)
    cached = sum(r.seq.cached_tokens for r in requests if r.seq is not None)
    groups: dict[str, list[float]] = {}
    for r in requests:
        hit = r.seq is not None and r.seq.cached_tokens > 0
        groups.setdefault(f"hit, {r.state}" if hit else "miss", []).append(_ms(r))
    out: dict[str, Any] = {
        "mode": mode,
        "ttft_p50_ms": round(statistics.median(ttfts), 1),
        "ttft_p90_ms": round(q[89], 1),
        "ttft_p99_ms": round(q[98], 1),
        "hit_rate": round(cached / sum(len(r.tokens) for r in requests), 3),
        "output_tokens_per_s": round(sum(len(r.reply) for r in requests) / end, 1),
        "busy_share": [round(w.busy_s / end, 2) for w in workers],
        "breakdown": {
            k: [len(v), round(statistics.median(v), 1)] for k, v in sorted(groups.items())
        },
    }
    played = [r for r in requests if "played_ms" in r.trace]
    if played:
        # The copy is faithful when the request's real first token came when it did there
        # (later requests, routed by the predicted cost on the copy, can join its step).
        same = sum(abs(r.trace["played_ms"][r.worker] - _ms(r)) < 0.05 for r in played)
        out["oracle_as_played"] = round(same / len(played), 3)
    if router is not None and router.cost == "predicted":
        out["ttft_prediction_error"] = round(router.ttft.relative_error, 3)
        out["ttft_coefficients"] = [round(c, 4) for c in router.ttft.coefficients()]
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--documents", type=int, default=48)
    p.add_argument("--questions", type=int, default=4, help="conversations per document")
    p.add_argument("--words", type=int, default=1000, help="words per document")
    p.add_argument(
        "--rate",
        type=float,
        default=12.0,
        help="conversations per second (Poisson); 0 = closed loop at --concurrency",
    )
    p.add_argument("--turns", type=int, default=1, help="user turns per conversation")
    p.add_argument(
        "--concurrency", type=int, default=0, help="conversations in flight at most (0 = no cap)"
    )
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--num-gpu-blocks", type=int, default=512)
    p.add_argument("--tenant-skew", type=float, default=1.0, help="Zipf exponent (0 = even)")
    p.add_argument("--temperature", type=float, default=0.0, help="the KV router's")
    p.add_argument("--overhead-ms", type=float, default=4.0, help="serving path per request")
    p.add_argument(
        "--modes",
        default="kv:predicted,kv:blocks,round-robin",
        help="kv:predicted, kv:blocks, kv:oracle, round-robin, random; comma-separated",
    )
    p.add_argument("--seeds", default="0", help="workload seeds, comma-separated: a run each")
    p.add_argument("--trace", action="store_true", help="also one JSON line per request")
    args = p.parse_args()
    for seed in args.seeds.split(","):
        args.seed = int(seed)
        results = []
        for mode in args.modes.split(","):
            result, requests = simulate(mode, args)
            results.append(result)
            if args.trace:
                for r in requests:
                    line = {"mode": mode, "rid": r.rid, "arrival_s": round(r.arrival, 3)}
                    line.update(document=r.document, worker=r.worker, state=r.state)
                    line.update(
                        cached=r.seq.cached_tokens if r.seq else 0, ttft_ms=round(_ms(r), 1)
                    )
                    print(json.dumps({**line, **r.trace}))
        rr = next((r for r in results if r["mode"] == "round-robin"), None)
        for r in results:
            if rr and r["mode"].startswith("kv"):
                r["ttft_p50_over_round_robin"] = round(r["ttft_p50_ms"] / rr["ttft_p50_ms"], 3)
            print(json.dumps({"seed": args.seed, **r}), flush=True)


if __name__ == "__main__":
    main()
