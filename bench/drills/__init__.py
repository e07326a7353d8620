"""Fault drills (issue 16): what clients see when a worker dies or is scaled down, when workers
restart one by one under load, when etcd and NATS go away, when the frontend is driven far past
its capacity, over a long run, and when the HTTP API is fuzzed. Loopback only, bounded in count
and time; results go to docs/reliability.md.

    uv run python bench/drills.py kill      # streams through out=dyn while a worker is SIGKILLed
    uv run python bench/drills.py drain     # the same with SIGTERM: finish or hand over, exit 0
    uv run python bench/drills.py rolling   # every worker replaced (SIGTERM) under load
    uv run python bench/drills.py control   # etcd stopped for 30 s, then NATS restarted, under load
    uv run python bench/drills.py soak      # streams for --minutes: errors, RSS and fd slopes
    uv run python bench/drills.py overload  # 10x capacity against --max-concurrent-requests
    uv run python bench/drills.py fuzz      # schemathesis from /openapi.json: no 5xx, no hang

The `out=dyn` drills run echo_core workers on the SmolLM2 GGUF (its tokenizer; the engine echoes
the prompt's tokens at DYN_TOKEN_ECHO_DELAY_MS), so the numbers measure the serving layer, not a
model. `overload` runs echo_full in process, `fuzz` the mocker in process (every route, random
tokens out). Each drill is a function and a table row (`runner.DRILLS`): its options and their
defaults.

The package's modules: `cluster` (etcd, NATS, workers and a frontend) and `load` (the streaming
clients and their summary), which the drills share; one module a drill (`lose_worker` for kill
and drain, `rolling`, `control`, `soak`, `overload`, `fuzz`); `runner`, the command line.
`bench/drills.py` is the script that runs it (the benches import `_common` from their folder).
"""
