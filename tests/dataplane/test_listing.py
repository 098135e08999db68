"""Collections in messages are cut to a readable length."""

from __future__ import annotations

from pytest_canary.dataplane.listing import MAX_LISTED, listed


def test_a_long_collection_names_its_first_items_and_counts_the_rest() -> None:
    assert listed(range(2_000)) == "0, 1, 2, 3, 4, 5, 6, 7, 8, 9, +1990 more"
    assert listed(iter(range(MAX_LISTED))) == ", ".join(map(str, range(MAX_LISTED)))
    assert listed(["a", "b", "c"], separator="; ", limit=2) == "a; b; +1 more"


def test_an_empty_collection_says_so() -> None:
    assert listed([]) == "none"
    assert listed((), empty="no workloads") == "no workloads"
