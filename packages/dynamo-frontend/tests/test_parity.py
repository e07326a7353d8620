"""The README's request-field by engine table is what the engines declare today."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dynamo.frontend.parity import ENGINES, cell, matrix
from dynamo.llm.engine import installed_engines, load_engine_class
from dynamo.llm.features import Feature

README = Path(__file__).parents[3] / "README.md"


def test_readme_table_is_current():
    if not set(ENGINES) <= set(installed_engines()):
        pytest.skip("not every engine of the table is installed")
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- parity:begin[^>]*-->\n(.*?)\n<!-- parity:end -->", text, re.S)
    assert block is not None, "README has no parity block"
    assert block.group(1) == matrix(), "run `python -m dynamo.frontend.parity` into README.md"


def test_cells():
    echo_full = load_engine_class("echo_full")
    echo_core = load_engine_class("echo_core")
    assert cell(echo_core, Feature.STOP) == "frontend"
    assert cell(echo_full, Feature.STOP_TOKEN_IDS) == "400"
    assert cell(echo_full, Feature.TEMPERATURE) == "no effect"
    assert cell(load_engine_class("mocker"), Feature.LOGPROBS) == "yes"
