from __future__ import annotations

import pytest

from dynamo.frontend.flags import UsageError, parse_command_line, parse_dyn_path


def test_in_out_and_positional_model():
    inv = parse_command_line(["in=http", "out=echo_core", "some/model", "--http-port", "9000"])
    assert (inv.input, inv.output) == ("http", "echo_core")
    assert inv.model_path == "some/model"
    assert inv.http_port == 9000


def test_defaults_match_the_seed():
    inv = parse_command_line(["in=http"])
    assert inv.http_port == 8080
    assert inv.router_mode == "round-robin"
    assert inv.kv_overlap_score_weight == 1.0
    assert inv.router_temperature == 0.0
    assert inv.output is None
    # Engine flags stay unset unless given, so an engine that cannot use them can refuse them.
    assert inv.context_length is None and inv.tensor_parallel_size is None


@pytest.mark.parametrize("mode", ["least-loaded", "power-of-two"])
def test_load_aware_router_modes(mode, capsys):
    assert parse_command_line(["in=http", "out=dyn", "--router-mode", mode]).router_mode == mode
    with pytest.raises(SystemExit):
        parse_command_line(["--help"])
    # the help says what each mode does
    help_text = " ".join(capsys.readouterr().out.split())
    assert "least-loaded (the fewest requests in flight" in help_text
    assert "power-of-two (two at random" in help_text


def test_model_path_flag_is_the_same_as_the_positional():
    inv = parse_command_line(["in=http", "--model-path", "m.gguf"])
    assert inv.model_path == "m.gguf"
    with pytest.raises(UsageError):
        parse_command_line(["a.gguf", "--model-path", "b.gguf"])


def test_old_dyn_output_spelling_means_dyn():
    assert parse_command_line(["in=http", "out=dyn://x.y.z"]).output == "dyn"


def test_input_defaults_to_stdin_when_not_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert parse_command_line([]).input == "stdin"
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    assert parse_command_line([]).input == "text"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("dyn://a.b.c", ("a", "b", "c")),
        ("dyn://test", ("test", "backend", "generate")),
        ("dyn://ns.comp", ("ns", "comp", "generate")),
    ],
)
def test_dyn_path_defaults(path, expected):
    assert parse_dyn_path(path) == expected


def test_bad_dyn_path():
    with pytest.raises(UsageError):
        parse_dyn_path("dyn://a.b.c.d")


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--http-port", "99999"),
        ("--http-port", "-1"),
        ("--http-port", "http"),
        ("--context-length", "-5"),
        ("--context-length", "0"),
        ("--kv-cache-block-size", "0"),
        ("--batch-concurrency", "-3"),
        ("--tensor-parallel-size", "0"),
        ("--num-nodes", "0"),
        ("--node-rank", "-1"),
        ("--base-gpu-id", "-1"),
        ("--migration-limit", "-1"),
    ],
)
def test_out_of_range_numbers_are_one_usage_error(flag, value, capsys):
    """Issue 18 item 12: these were accepted (port 99999 listened on 34463, logging 99999)."""
    with pytest.raises(SystemExit) as exited:
        parse_command_line(["in=http", "out=echo_core", flag, value])
    assert exited.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("dynamo-run: error: ") and flag in errors[0]


def test_port_zero_and_the_top_port_are_ports():
    assert parse_command_line(["in=http", "--http-port", "0"]).http_port == 0
    assert parse_command_line(["in=http", "--http-port", "65535"]).http_port == 65535


@pytest.mark.parametrize(
    "argv",
    [
        ["in=http", "in=text", "out=echo_core"],
        ["in=http", "out=echo_core", "out=echo_full"],
    ],
)
def test_a_repeated_in_or_out_is_refused(argv):
    """Issue 18 item 12: the second in= became the model path."""
    with pytest.raises(UsageError, match="given twice"):
        parse_command_line(argv)


def test_an_empty_model_name_is_refused():
    """Issue 18 item 12: --model-name "" silently became the engine's name."""
    with pytest.raises(UsageError, match="--model-name"):
        parse_command_line(["in=http", "out=echo_core", "--model-name", ""])
