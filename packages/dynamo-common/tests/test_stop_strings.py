from __future__ import annotations

import random

import pytest

from dynamo.llm.stop_strings import StopStringJail


def feed_all(jail: StopStringJail, pieces: list[str]) -> tuple[str, str | None]:
    out = []
    for piece in pieces:
        text, matched = jail.feed(piece)
        out.append(text)
        if matched is not None:
            return "".join(out), matched
    return "".join(out) + jail.release(), None


def oracle(text: str, stops: list[str], include: bool) -> tuple[str, str | None]:
    """The whole text at once, by brute force: the match that ends first, then the longest."""
    best = None
    for stop in stops:
        start = text.find(stop)
        if start != -1:
            key = (start + len(stop), start)
            if best is None or key < best[0]:
                best = (key, stop)
    if best is None:
        return text, None
    (end, start), stop = best
    return (text[:end] if include else text[:start]), stop


def test_no_stops_passes_through():
    jail = StopStringJail([])
    assert not jail
    assert feed_all(jail, ["a", "b"]) == ("ab", None)


def test_empty_stop_strings_are_ignored():
    assert not StopStringJail(["", ""])


def test_match_across_pieces_is_cut():
    assert feed_all(StopStringJail(["STOP"]), ["hello S", "TO", "P world"]) == ("hello ", "STOP")


def test_include_stop_string():
    assert feed_all(StopStringJail(["STOP"], True), ["ab", "STOP", "cd"]) == ("abSTOP", "STOP")


def test_partial_prefix_is_held_then_released():
    jail = StopStringJail(["abc"])
    assert jail.feed("xxab") == ("xx", None)  # "ab" might start "abc"
    assert jail.held == "ab"
    assert jail.feed("d") == ("abd", None)  # it did not
    assert jail.feed("a") == ("", None)
    assert jail.release() == "a"
    assert jail.held == ""


def test_overlapping_prefix():
    # "aab" with stop "ab": the first "a" is safe, the match starts at the second.
    jail = StopStringJail(["ab"])
    assert jail.feed("a") == ("", None)
    assert jail.feed("a") == ("a", None)
    assert jail.feed("b") == ("", "ab")


def test_self_overlapping_stop_string():
    # "aaab" holds "aa" then "aaa" could still begin "aaab" one character later.
    assert feed_all(StopStringJail(["aab"]), ["a", "a", "a", "b", "c"]) == ("a", "aab")
    assert feed_all(StopStringJail(["abab"]), ["ab", "ab", "ab"]) == ("", "abab")
    assert feed_all(StopStringJail(["abac"]), ["ab", "ab", "ac"]) == ("ab", "abac")


def test_the_match_that_ends_first_wins():
    # "lo w" ends before "world" does, whatever the order the stop strings were given in.
    assert feed_all(StopStringJail(["world", "lo w"]), ["hello world"]) == ("hel", "lo w")
    # "bc" completes before "abcd": a character-by-character stream would stop there.
    assert feed_all(StopStringJail(["abcd", "bc"]), ["xabcd"]) == ("xa", "bc")
    # Same end: the longer one.
    assert feed_all(StopStringJail(["cd", "bcd"]), ["abcd"]) == ("a", "bcd")


def test_non_ascii_stop_strings():
    assert feed_all(StopStringJail(["中文"]), ["x中", "文y"]) == ("x", "中文")
    assert feed_all(StopStringJail(["🎉!"]), ["a🎉", "?🎉", "!"]) == ("a🎉?", "🎉!")


@pytest.mark.parametrize("seed", range(30))
def test_any_split_matches_the_whole_text(seed):
    rng = random.Random(seed)
    alphabet = "ab\n中🎉"
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
    stops = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 5))) for _ in range(3)]
    include = rng.random() < 0.5
    cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randint(0, 20))))
    pieces = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    assert feed_all(StopStringJail(stops, include), pieces) == oracle(text, stops, include)


@pytest.mark.parametrize("seed", range(40))
def test_self_overlapping_stops_match_the_oracle(seed):
    """Stops over a two-letter alphabet overlap themselves: the automaton's fallbacks must hold."""
    rng = random.Random(1000 + seed)
    text = "".join(rng.choice("ab") for _ in range(rng.randint(0, 200)))
    stops = ["".join(rng.choice("ab") for _ in range(rng.randint(1, 9))) for _ in range(4)]
    include = rng.random() < 0.5
    cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randint(0, 60))))
    pieces = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    assert feed_all(StopStringJail(stops, include), pieces) == oracle(text, stops, include)


def test_a_long_stop_string_costs_its_length_not_its_square():
    """Issue 18 item 2: every prefix of every stop string was materialised (a 100 KB stop took
    ~5 GB). Building and feeding a jail must stay linear in the stop string's length."""
    import tracemalloc

    stop = "x" * 20_000
    tracemalloc.start()
    try:
        jail = StopStringJail([stop])
        emitted, matched = jail.feed("x" * 19_999)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (emitted, matched) == ("", None) and len(jail.held) == 19_999
    assert jail.feed("xy") == ("", stop)
    assert peak < 2_000_000  # the prefixes alone were 200 MB
