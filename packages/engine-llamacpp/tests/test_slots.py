"""Slot choice: lowest free first, or the longest cached prefix with prefix caching."""

from __future__ import annotations

from dynamo.engines.llamacpp._slots import SlotTable, common_prefix


def test_common_prefix():
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([1, 2], [1, 2, 3]) == 2
    assert common_prefix([], [1]) == 0


def test_lowest_free_slot_first():
    table = SlotTable(3)
    assert [table.take([])[0] for _ in range(3)] == [0, 1, 2]
    assert table.free == 0
    table.give_back(1)
    table.give_back(0)
    assert table.take([5, 6]) == (0, 0)
    assert table.free == 1


def test_longest_held_prefix_wins_and_never_the_whole_prompt():
    table = SlotTable(3)
    for _ in range(3):
        table.take([])
    table.give_back(0, [1, 2, 9])
    table.give_back(2, [1, 2, 3, 4, 5])
    assert table.take([1, 2, 3, 7]) == (2, 3)
    # The slot's cells are the request's now: nothing is remembered for a later prompt.
    table.give_back(2)
    assert table.take([1, 2, 3, 7]) == (0, 2)
    # A prompt the slot holds entirely still decodes its last token (its logits are needed).
    table.give_back(0, [4, 5, 6])
    assert table.take([4, 5, 6]) == (0, 2)
