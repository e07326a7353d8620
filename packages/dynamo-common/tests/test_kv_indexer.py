"""Radix indexer against hand-built event sequences."""

import logging

import pytest

from dynamo.llm.kv.events import Cleared, Removed, RouterEvent, Stored, StoredBlock
from dynamo.llm.kv.indexer import RadixIndexer


def stored(worker: int, parent: int | None, *blocks: tuple[int, int], eid: int = 0) -> RouterEvent:
    return RouterEvent(worker, eid, Stored(parent, tuple(StoredBlock(b, t) for b, t in blocks)))


def removed(worker: int, *hashes: int) -> RouterEvent:
    return RouterEvent(worker, 0, Removed(hashes))


@pytest.fixture
def idx() -> RadixIndexer:
    # Tokens hashes 1,2,3 spell one prompt; worker 10 holds all three, worker 20 the first two
    # (announced in two events, the second continuing the first), worker 30 only 1 then 9.
    i = RadixIndexer()
    assert i.apply_event(stored(10, None, (101, 1), (102, 2), (103, 3)))
    assert i.apply_event(stored(20, None, (201, 1)))
    assert i.apply_event(stored(20, 201, (202, 2)))
    assert i.apply_event(stored(30, None, (301, 1), (309, 9)))
    return i


def test_overlap_scores(idx: RadixIndexer) -> None:
    m = idx.find_matches([1, 2, 3, 4])
    assert m.scores == {10: 3, 20: 2, 30: 1}
    assert m.tree_sizes == {10: 3, 20: 2, 30: 2}
    assert idx.find_matches([1, 9]).scores == {10: 1, 20: 1, 30: 2}
    assert idx.find_matches([2, 3]).scores == {}
    assert idx.find_matches([]).scores == {}
    assert idx.num_nodes() == 4


def test_matches_are_consecutive_from_the_root() -> None:
    i = RadixIndexer()
    i.apply_event(stored(1, None, (11, 1), (12, 2), (13, 3)))
    i.apply_event(stored(2, None, (21, 1), (22, 2), (23, 3)))
    i.apply_event(removed(2, 22))
    # Worker 2 still holds block 3 but lost block 2: only its first block counts.
    assert i.find_matches([1, 2, 3]).scores == {1: 3, 2: 1}
    assert i.num_nodes() == 3


def test_removed_prunes_empty_leaves(idx: RadixIndexer) -> None:
    idx.apply_event(removed(10, 103))
    assert idx.find_matches([1, 2, 3]).scores == {10: 2, 20: 2, 30: 1}
    assert idx.num_nodes() == 3
    idx.apply_event(removed(30, 309, 301))
    assert idx.find_matches([1, 9]).scores == {10: 1, 20: 1}
    assert idx.tree_sizes()[30] == 0
    assert idx.num_nodes() == 2
    # Unknown hashes and unknown workers are ignored.
    assert idx.apply_event(removed(30, 12345))
    assert idx.apply_event(removed(99, 1))


def test_parent_not_found_is_dropped_and_logged(
    idx: RadixIndexer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dynamo.llm.kv.indexer"):
        assert not idx.apply_event(stored(20, 999, (203, 3), eid=7))
    assert "KV event 7 of worker 20 dropped" in caplog.text
    assert idx.parent_not_found == 1
    assert idx.find_matches([1, 2, 3]).scores == {10: 3, 20: 2, 30: 1}


def test_cleared(idx: RadixIndexer) -> None:
    idx.apply_event(RouterEvent(10, 5, Cleared()))
    assert idx.find_matches([1, 2, 3]).scores == {20: 2, 30: 1}
    assert idx.tree_sizes()[10] == 0
    assert 10 in idx.workers()
    # After a clear the worker starts from the root again.
    idx.apply_event(stored(10, None, (111, 1)))
    assert idx.find_matches([1, 2]).scores == {10: 1, 20: 2, 30: 1}


def test_remove_worker_takes_its_blocks(idx: RadixIndexer) -> None:
    idx.remove_worker(10)
    assert idx.find_matches([1, 2, 3]).scores == {20: 2, 30: 1}
    assert 10 not in idx.tree_sizes()
    assert idx.num_nodes() == 3
    idx.remove_worker(20)
    idx.remove_worker(30)
    assert idx.num_nodes() == 0
    assert idx.workers() == []


def test_blocks_of(idx: RadixIndexer) -> None:
    assert idx.blocks_of(20) == {201, 202}
    assert idx.blocks_of(77) == set()


def test_many_workers_and_reused_slots() -> None:
    # Workers are bits of an int mask: more than 64 of them, and slots freed by workers that
    # left and taken by new ones, must not mix up whose blocks are whose.
    i = RadixIndexer()
    for w in range(100):
        i.apply_event(stored(1000 + w, None, (w * 10 + 1, 1), (w * 10 + 2, 2 if w % 2 else 5)))
    assert i.find_matches([1, 2]).scores == {1000 + w: 2 if w % 2 else 1 for w in range(100)}
    for w in range(0, 100, 3):
        i.remove_worker(1000 + w)
    i.apply_event(stored(7, None, (71, 1), (72, 2), (73, 3)))
    i.apply_event(stored(8, None, (81, 1)))
    expected = {1000 + w: 2 if w % 2 else 1 for w in range(100) if w % 3}
    assert i.find_matches([1, 2, 3]).scores == {**expected, 7: 3, 8: 1}
    assert i.tree_sizes()[7] == 3
    assert 1000 not in i.workers()


def test_sequence_matches_equal_local_matches(idx: RadixIndexer) -> None:
    from dynamo.llm.kv.hashing import sequence_hashes

    for local in ([1, 2, 3, 4], [1, 9], [2, 3], [1]):
        by_seq = idx.find_sequence_matches(sequence_hashes(local), with_tree_sizes=False)
        assert by_seq.scores == idx.find_matches(local).scores
    assert idx.find_sequence_matches([]).scores == {}


# -- the budget ----------------------------------------------------------------------------------


def test_budget_drops_the_least_recently_announced_of_the_largest_worker() -> None:
    i = RadixIndexer(max_blocks=4)
    assert i.apply_event(stored(10, None, (101, 1), (102, 2), (103, 3)))
    assert i.apply_event(stored(20, None, (201, 1)))
    assert i.num_entries() == 4 and i.evicted_blocks == 0
    # Worker 10 announces its first block again (it moves last), then a fifth entry arrives:
    # worker 10 holds the most, and its oldest announcement is now block 102.
    assert i.apply_event(stored(10, None, (101, 1)))
    assert i.apply_event(stored(20, 201, (202, 2)))
    assert i.num_entries() == 4 and i.evicted_blocks == 1
    assert i.blocks_of(10) == {101, 103} and i.blocks_of(20) == {201, 202}
    assert i.find_matches([1, 2]).scores == {10: 1, 20: 2}
    # Removing and clearing keep the count right.
    assert i.apply_event(removed(20, 202))
    i.clear_worker(10)
    assert i.num_entries() == 1 == i.num_nodes()


def test_churn_stays_within_the_budget() -> None:
    """A long run of stored events whose `removed` never come (lost, or a worker that does not
    send them): the index stays at its budget, in entries and in distinct blocks."""
    budget = 2_000
    i = RadixIndexer(max_blocks=budget)
    for n in range(200_000):
        worker = n % 8
        parent = None if n % 50 < 8 else n - 8  # chains of blocks per worker, restarting
        i.apply_event(stored(worker, parent, (n, n * 7 + 1)))
        if n % 3 == 0:
            i.apply_event(removed(worker, n - 24))  # some removals, of blocks maybe evicted
        assert i.num_entries() <= budget
    assert i.num_nodes() <= budget
    assert i.evicted_blocks > 100_000
    assert sum(i.tree_sizes().values()) == i.num_entries()


def test_default_budget_and_no_limit() -> None:
    assert RadixIndexer().max_blocks == 1_000_000
    unbounded = RadixIndexer(max_blocks=None)
    for n in range(100):
        unbounded.apply_event(stored(1, None, (n, n)))
    assert unbounded.num_entries() == 100 and unbounded.evicted_blocks == 0
