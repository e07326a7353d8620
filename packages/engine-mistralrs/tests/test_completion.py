"""Where a completion's slice is cut for the next one (the slices themselves run on the real model
in test_engine.py)."""

from __future__ import annotations

from dynamo.engines.mistralrs._completion import kept_length


def test_a_slice_keeps_its_text_up_to_its_last_whitespace():
    # SmolLM2 writes "\n" "\n": kept, they would read back as one "\n\n" token.
    assert kept_length(" Paris.\n\n") == len(" Paris.")
    assert kept_length(" Paris. The cap") == len(" Paris. The")
    assert kept_length("x = 1\n    ") == len("x = 1")


def test_a_slice_without_a_word_boundary_is_kept_whole():
    assert kept_length(" Paris") == len(" Paris")
    assert kept_length("\n\n") == 2
    assert kept_length("") == 0
