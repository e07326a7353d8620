"""The HTTP security and limit flags: parsing, the environment, and one-line usage errors."""

from __future__ import annotations

import pytest

from dynamo.frontend.cli import main
from dynamo.frontend.flags import UsageError, parse_command_line
from dynamo.frontend.http.options import HttpOptions, parse_size


def options(*argv: str, env: dict[str, str] | None = None) -> HttpOptions:
    inv = parse_command_line(["in=http", "out=echo_full", *argv])
    return HttpOptions.from_args(inv, env or {})


@pytest.mark.parametrize(
    ("text", "size"),
    [("1048576", 1048576), ("8MiB", 8 << 20), ("512k", 512 << 10), ("2 GB", 2 << 30)],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MiB", "1.5MiB", "-3", "8 parsecs"])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_defaults():
    o = options()
    assert o == HttpOptions()
    assert o.api_keys == () and o.allowed_origins == () and o.max_body_bytes == 8 << 20
    assert o.scheme == "http"


def test_keys_from_flags_and_environment():
    assert options("--api-key", "a", "--api-key", "b,c").api_keys == ("a", "b", "c")
    assert options(env={"DYN_API_KEY": "x, y"}).api_keys == ("x", "y")
    # The flag wins over the environment.
    assert options("--api-key", "a", env={"DYN_API_KEY": "x"}).api_keys == ("a",)


def test_origins_and_body_size():
    o = options(
        "--allowed-origins", "https://a.example,https://b.example", "--allowed-origins", "*"
    )
    assert o.allowed_origins == ("https://a.example", "https://b.example", "*")
    assert options("--max-request-body-size", "64KiB").max_body_bytes == 64 << 10


def test_tls_paths(tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    o = options("--tls-cert-path", str(cert), "--tls-key-path", str(key))
    assert o.scheme == "https"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--tls-cert-path", "/nonexistent/c.pem"], "go together"),
        (["--tls-cert-path", "/nonexistent/c.pem", "--tls-key-path", "/x"], "no such file"),
        (["--max-request-body-size", "lots"], "--max-request-body-size"),
        (["--max-request-body-size", "0"], "more than 0"),
        (["--protect-metrics"], "needs an API key"),
    ],
)
def test_bad_values_are_usage_errors(argv, needle):
    with pytest.raises(UsageError, match=needle):
        parse_command_line(["in=http", "out=echo_full", *argv])


@pytest.mark.parametrize(
    "flag", [["--api-key", "k"], ["--protect-metrics"], ["--allowed-origins", "*"]]
)
def test_http_flags_refused_without_http(flag):
    with pytest.raises(UsageError, match="needs in=http"):
        parse_command_line(["in=text", "out=echo_full", *flag])


def test_cli_prints_one_line(capsys):
    assert main(["in=http", "out=echo_full", "--max-request-body-size", "huge"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dynamo-run: error: --max-request-body-size") and "\n" not in err
