from __future__ import annotations

import logging

from dynamo.frontend.logging_setup import TRACE, parse_dyn_log


def test_bare_level_sets_root():
    assert parse_dyn_log("debug") == (logging.DEBUG, {})


def test_targets_map_onto_python_loggers():
    root, per = parse_dyn_log("dynamo.runtime=debug,warn,dynamo_llm::kv_router=trace")
    assert root == logging.WARNING
    assert per == {"dynamo.runtime": logging.DEBUG, "dynamo.llm.kv_router": TRACE}


def test_unknown_words_are_ignored_and_default_kept():
    assert parse_dyn_log("loud,x=shout", default=logging.INFO) == (logging.INFO, {})


def test_records_go_to_the_stderr_of_the_moment(monkeypatch):
    """A stderr replaced and closed after set-up (pytest's capture around an in-process run)
    must not leave logging writing to a closed stream."""
    import io
    import sys

    from dynamo.frontend.logging_setup import StderrHandler

    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    handler = StderrHandler()
    log = logging.getLogger("test-stderr-of-the-moment")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("one")
        first.close()
        monkeypatch.setattr(sys, "stderr", second)
        log.warning("two")
    finally:
        log.removeHandler(handler)
    assert second.getvalue() == "two\n"
