"""Engine.library: a lazily imported engine library is checked before any model loads."""

import pytest

from dynamo.llm import Engine, EngineError, ModelType
from dynamo.llm.engine import check_library


class _Lazy(Engine):
    model_type = ModelType.Backend
    library = "no_such_engine_library_here"
    library_requirement = "no-such-engine-library"

    @classmethod
    async def start(cls, config):  # pragma: no cover - never started
        raise AssertionError

    def generate(self, request, context):  # pragma: no cover
        raise AssertionError


def test_a_missing_library_names_what_to_install() -> None:
    with pytest.raises(EngineError) as e:
        check_library("lazy", _Lazy)
    assert str(e.value) == (
        "out=lazy needs no-such-engine-library, which is not installed: "
        "pip install no-such-engine-library"
    )


def test_an_installed_library_or_none_passes() -> None:
    class Present(_Lazy):
        library = "json"

    class Eager(_Lazy):
        library = None

    check_library("present", Present)
    check_library("eager", Eager)


def test_first_line_of_an_error() -> None:
    from dynamo.llm.errors import first_line

    assert first_line(ValueError("bad value\n  more detail\n")) == "bad value"
    assert first_line(RuntimeError()) == "RuntimeError"
