from __future__ import annotations

from dynamo.llm.stop_strings import StopStringJail


def feed_all(jail: StopStringJail, pieces: list[str]) -> tuple[str, str | None]:
    out = []
    for piece in pieces:
        text, matched = jail.feed(piece)
        out.append(text)
        if matched is not None:
            return "".join(out), matched
    return "".join(out) + jail.release(), None


def test_no_stops_passes_through():
    assert feed_all(StopStringJail([]), ["a", "b"]) == ("ab", None)


def test_match_across_pieces_is_cut():
    assert feed_all(StopStringJail(["STOP"]), ["hello S", "TO", "P world"]) == ("hello ", "STOP")


def test_include_stop_string():
    assert feed_all(StopStringJail(["STOP"], True), ["ab", "STOP", "cd"]) == ("abSTOP", "STOP")


def test_partial_prefix_is_held_then_released():
    jail = StopStringJail(["abc"])
    assert jail.feed("xxab") == ("xx", None)  # "ab" might start "abc"
    assert jail.feed("d") == ("abd", None)  # it did not
    assert jail.feed("a") == ("", None)
    assert jail.release() == "a"


def test_overlapping_prefix():
    # "aab" with stop "ab": the first "a" is safe, the match starts at the second.
    assert feed_all(StopStringJail(["ab"]), ["a", "a", "b"]) == ("a", "ab")


def test_earliest_match_wins():
    assert feed_all(StopStringJail(["world", "lo w"]), ["hello world"]) == ("hel", "lo w")
