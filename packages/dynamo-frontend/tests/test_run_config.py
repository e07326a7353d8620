"""The run configuration: one frozen `RunConfig` per command line, and the table of which flag
applies in which mode (a typed flag that means nothing there is one usage line)."""

from __future__ import annotations

import dataclasses

import pytest

from dynamo.frontend.flags import UsageError, build_parser, parse_command_line
from dynamo.frontend.run_config import FLAG_SCOPES, Mode, RunConfig

#: The modes, by the start of their command line.
MODES = {
    "local-http": ["in=http", "out=echo_full"],
    "local-text": ["in=text", "out=echo_full"],
    "local-stdin": ["in=stdin", "out=echo_full"],
    "local-batch": ["in=batch:p.jsonl", "out=echo_full"],
    "front-http": ["in=http", "out=dyn"],
    "front-text": ["in=text", "out=dyn"],
    "front-batch": ["in=batch:p.jsonl", "out=dyn"],
    "worker": ["in=dyn://ns.comp.ep", "out=echo_full"],
}

# What each flag (with a valid value) gets in each mode, in MODES' order: y accepted, n refused.
# Written out by hand rather than read from FLAG_SCOPES, so that a change to the table shows
# here as a decision.
#                                                   local       front    worker
#                                                   h t s b     h t b    w
MATRIX = """
MODEL m.gguf                                        y y y y     n n n    y
--model-path m.gguf                                 y y y y     n n n    y
--model-name x                                      y y y y     n n n    y
--served-model-name x                               y y y y     n n n    y
--served-model-name x y                             y n n n     n n n    y
--chat-template t.jinja                             y y y y     n n n    y
--embedding                                         y n n n     n n n    y
--model-config hf                                   y y y y     n n n    y
--tool-call-parser hermes                           y n n n     y n n    y
--reasoning-parser deepseek_r1                      y y y y     y y y    y
--context-length 5                                  y y y y     n n n    y
--kv-cache-block-size 16                            y y y y     n n n    y
--extra-engine-args {}                              y y y y     n n n    y
--tensor-parallel-size 2                            y y y y     n n n    y
--base-gpu-id 1                                     y y y y     n n n    y
--num-nodes 2                                       y y y y     n n n    y
--node-rank 1                                       y y y y     n n n    y
--leader-addr h:1                                   y y y y     n n n    y
--request-template TEMPLATE                         y n n n     y n n    n
--http-host 127.0.0.1                               y n n n     y n n    n
--http-port 8080                                    y n n n     y n n    n
--http-workers 1                                    y n n n     y n n    n
--http-workers 2                                    n n n n     y n n    n
--enable-anthropic-api                              y n n n     y n n    n
--api-key k                                         y n n n     y n n    n
--protect-metrics --api-key k                       y n n n     y n n    n
--allowed-origins *                                 y n n n     y n n    n
--tls-cert-path PEM --tls-key-path PEM              y n n n     y n n    n
--max-request-body-size 1MiB                        y n n n     y n n    n
--max-concurrent-requests 2                         y n n n     y n n    n
--queue-size 3                                      y n n n     y n n    n
--queue-timeout 1                                   y n n n     y n n    n
--request-timeout 1                                 y n n n     y n n    n
--router-mode round-robin                           n n n n     y y y    n
--router-mode kv                                    n n n n     y y y    n
--router-cost blocks                                n n n n     n n n    n
--kv-overlap-score-weight 2                         n n n n     n n n    n
--router-temperature 0.5                            n n n n     n n n    n
--kv-index-max-blocks 9                             n n n n     n n n    n
--migration-limit 3                                 n n n n     y y y    y
--request-plane tcp                                 n n n n     y y y    y
--discovery-backend etcd                            n n n n     y y y    y
--batch-concurrency 2                               n n n y     n n y    n
-v                                                  y y y y     y y y    y
"""


def _rows():
    for line in MATRIX.strip().splitlines():
        words = line.split()
        cells = words[-len(MODES) :]
        argv = words[: -len(MODES)]
        yield argv, dict(zip(MODES, cells, strict=True))


CASES = [
    pytest.param(argv, mode, cell == "y", id=f"{' '.join(argv)}@{mode}")
    for argv, cells in _rows()
    for mode, cell in cells.items()
]


@pytest.mark.parametrize(("flags", "mode", "accepted"), CASES)
def test_flag_by_mode(flags, mode, accepted, tmp_path):
    # PEM: a file that exists (the TLS flags check that their files do); TEMPLATE: a valid
    # request template (read when the config is built).
    template = tmp_path / "template.json"
    template.write_text("{}")
    files = {"PEM": __file__, "TEMPLATE": str(template)}
    values = [files.get(w, w) for w in flags]
    argv = [*MODES[mode], *(values[1:] if flags[0] == "MODEL" else values)]
    if accepted:
        parse_command_line(argv)
        return
    with pytest.raises(UsageError) as refused:
        parse_command_line(argv)
    # One line that names a flag typed (the positional model as MODEL) before saying why.
    line = str(refused.value)
    typed = [w for w in flags if w.startswith("-")] or ["MODEL"]
    assert "\n" not in line and any(f in line.split(": ")[0] for f in typed), line


def test_the_kv_router_flags_apply_with_the_kv_router():
    for flags in (
        ["--router-cost", "blocks"],
        ["--kv-overlap-score-weight", "2"],
        ["--router-temperature", "0.5"],
        ["--kv-index-max-blocks", "9"],
    ):
        config = parse_command_line(["in=http", "out=dyn", "--router-mode", "kv", *flags])
        assert flags[0].removeprefix("--").replace("-", "_") in config.explicit
        with pytest.raises(UsageError, match=f"^{flags[0]} is a KV router flag"):
            parse_command_line(["in=http", "out=dyn", "--router-mode", "random", *flags])


def test_every_flag_has_a_field_and_a_scope():
    dests = {a.dest for a in build_parser()._actions if a.dest != "help"}
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    # MODEL and --model-path are one field; --served-model-name becomes the name and aliases.
    assert dests - fields == {"model", "served_model_name"}
    assert set(FLAG_SCOPES) == dests - {"model"}
    matrix_flags = {w for line in MATRIX.strip().splitlines() for w in line.split()[:3]}
    spelled = {max(a.option_strings, key=len) for a in build_parser()._actions if a.option_strings}
    assert spelled - {"--help", "--verbose"} <= matrix_flags


def test_defaults_nobody_typed_are_not_refused():
    # --http-port, --router-mode, --batch-concurrency, ... have defaults: only typed ones count.
    config = parse_command_line(["in=text", "out=echo_full"])
    assert config.explicit == frozenset()
    assert (config.http_port, config.router_mode, config.batch_concurrency) == (
        8080,
        "round-robin",
        16,
    )


def test_a_typed_default_counts_as_typed():
    with pytest.raises(UsageError, match="--http-port is a flag of the HTTP server"):
        parse_command_line(["in=text", "out=echo_full", "--http-port", "8080"])
    config = parse_command_line(["in=http", "out=mocker", "--kv-cache-block-size", "16"])
    assert config.kv_cache_block_size == 16 and "kv_cache_block_size" in config.explicit


def test_the_config_is_frozen_and_derived_once():
    config = parse_command_line(["in=http", "out=echo_full", "--api-key", "k"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.http_port = 1  # type: ignore[misc]
    assert config.mode is Mode.LOCAL
    assert config.http is not None and config.http.api_keys == ("k",)
    assert config.admission is not None and config.runtime is None
    worker = parse_command_line(["in=dyn://a.b", "out=echo_full", "--request-plane", "nats"])
    assert worker.mode is Mode.WORKER and worker.http is None
    assert worker.runtime is not None and worker.runtime.request_plane == "nats"
    frontend = parse_command_line(["in=text", "out=dyn", "--discovery-backend", "file"])
    assert frontend.mode is Mode.FRONTEND
    assert frontend.runtime is not None and frontend.runtime.discovery_backend == "file"


def test_names_and_aliases():
    config = parse_command_line(
        ["in=http", "out=echo_full", "m.gguf", "--served-model-name", "a", "b"]
    )
    assert (config.model_path, config.model_name, config.model_aliases) == ("m.gguf", "a", ("b",))
    assert {"model_path", "served_model_name"} <= config.explicit


def test_structural_errors():
    for argv, needle in (
        (["in=carrier-pigeon"], "unknown input"),
        (["in=batch:"], "needs a file"),
        (["in=dyn://a.b.c", "out=dyn"], "cannot also be out=dyn"),
        (["in=dyn://a.b.c.d", "out=echo_full"], "bad endpoint"),
    ):
        with pytest.raises(UsageError, match=needle):
            parse_command_line(argv)


def test_the_files_flags_name_are_read_before_any_model_loads(tmp_path):
    config = parse_command_line(["in=http", "out=mocker", "--extra-engine-args", '{"speedup": 2}'])
    assert dict(config.engine_args) == {"speedup": 2}
    with pytest.raises(TypeError):
        config.engine_args["speedup"] = 3  # type: ignore[index]
    with pytest.raises(UsageError, match="--extra-engine-args is not valid JSON"):
        parse_command_line(["in=http", "out=mocker", "--extra-engine-args", "{nope"])
    template = tmp_path / "t.json"
    template.write_text('{"temperature": 0.5}')
    config = parse_command_line(["in=http", "out=echo_full", "--request-template", str(template)])
    assert config.template is not None and config.template.temperature == 0.5
    template.write_text("[1]")
    with pytest.raises(UsageError, match="--request-template"):
        parse_command_line(["in=http", "out=echo_full", "--request-template", str(template)])


@pytest.mark.parametrize(
    "argv",
    [
        ["in=text", "out=echo_full", "--router-mode", "kv"],
        ["in=http", "out=dyn", "--model-name", "x"],
        ["in=dyn://a.b.c", "out=echo_full", "--http-port", "9000"],
        ["in=http", "out=echo_full", "--migration-limit", "2"],
    ],
)
def test_the_cli_refuses_in_one_line_with_exit_2(argv, capsys):
    from dynamo.frontend.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dynamo-run: error: --") and err.count("\n") == 1, err
    assert "Traceback" not in err
