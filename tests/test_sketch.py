"""Tests of the quantile sketch (:mod:`streams.core.sketch`) and of team label sanitizing
(:func:`streams.core.labels.team_label`)."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest
from helpers.strategies import generated
from hypothesis import given
from hypothesis import strategies as st

from streams.core.kpis import ALL, OTHER, UNKNOWN
from streams.core.labels import MAX_LABEL_LENGTH, team_label
from streams.core.sketch import (
    RELATIVE_ACCURACY,
    ZERO_KEY,
    Sketch,
    add_value,
    bucket_value_us,
    merge_into,
    nearest_rank,
    quantile_us,
    sketch_key,
)

US = 1_000_000
THIRTY_DAYS_US = 30 * 86400 * US

durations = st.one_of(
    st.integers(0, THIRTY_DAYS_US),
    st.integers(0, 10_000),  # small values: 0 and single microseconds
    st.sampled_from([0, 1, 2, US, 60 * US, 3600 * US, 86400 * US, THIRTY_DAYS_US]),
)
QUANTILES = [(1, 2), (9, 10), (1, 100), (99, 100), (0, 1), (1, 1), (1, 3)]


def sketch_of(values: list[int]) -> Sketch:
    sketch: Sketch = {}
    for value in values:
        add_value(sketch, value, +1)
    return sketch


def exact_nearest_rank(values: list[int], q: Fraction) -> int:
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def relative_error(estimate: float, exact: int) -> float:
    if exact == 0:
        return 0.0 if estimate == 0 else math.inf
    return abs(estimate - exact) / exact


# --- accuracy -----------------------------------------------------------------------------------


@generated(300)
@given(st.lists(durations, min_size=1, max_size=200), st.sampled_from(QUANTILES))
def test_quantiles_are_within_one_percent_of_the_exact_nearest_rank(
    values: list[int], q: tuple[int, int]
) -> None:
    estimate = quantile_us(sketch_of(values), *q)
    assert estimate is not None
    exact = exact_nearest_rank(values, Fraction(*q))
    error = relative_error(estimate, exact)
    assert error <= 0.01, (estimate, exact)
    # The module promises its own, tighter bound (float rounding aside).
    assert error <= RELATIVE_ACCURACY * (1 + 1e-9), (estimate, exact)


@generated(300)
@given(durations)
def test_every_value_is_reported_within_the_accuracy_of_its_bucket(value: int) -> None:
    reported = bucket_value_us(sketch_key(value))
    assert relative_error(reported, value) <= RELATIVE_ACCURACY * (1 + 1e-9)


@given(durations, durations)
def test_bucket_keys_are_monotone(a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert sketch_key(low) <= sketch_key(high)


def test_zero_is_exact_and_distinct_from_one_microsecond() -> None:
    assert sketch_key(0) == ZERO_KEY
    assert sketch_key(1) != ZERO_KEY
    assert bucket_value_us(ZERO_KEY) == 0.0
    assert quantile_us(sketch_of([0, 0, 0]), 9, 10) == 0.0
    assert quantile_us(sketch_of([0, 0, 1]), 1, 2) == 0.0
    one = quantile_us(sketch_of([0, 1, 1]), 1, 2)
    assert one is not None
    assert one > 0
    assert one == pytest.approx(1.0, rel=RELATIVE_ACCURACY * 1.001)


def test_empty_sketch_has_no_quantile() -> None:
    assert quantile_us({}, 1, 2) is None
    assert quantile_us({}, 9, 10) is None


def test_quantile_picks_the_right_rank_across_far_apart_values() -> None:
    values = [10 * US] * 5 + [3600 * US] * 4 + [86400 * US]  # n = 10
    sketch = sketch_of(values)
    assert quantile_us(sketch, 1, 2) == pytest.approx(10 * US, rel=0.005)  # rank 5
    assert quantile_us(sketch, 9, 10) == pytest.approx(3600 * US, rel=0.005)  # rank 9
    assert quantile_us(sketch, 1, 1) == pytest.approx(86400 * US, rel=0.005)  # rank 10


# --- add / remove / merge -------------------------------------------------------------------------


@given(st.lists(durations, max_size=100), st.randoms(use_true_random=False))
def test_adding_then_removing_restores_emptiness(values: list[int], rnd: random.Random) -> None:
    sketch = sketch_of(values)
    assert sum(sketch.values()) == len(values)
    assert all(count > 0 for count in sketch.values())
    removal = list(values)
    rnd.shuffle(removal)
    for value in removal:
        add_value(sketch, value, -1)
    assert sketch == {}


@given(st.lists(durations, max_size=60), st.lists(durations, max_size=60))
def test_merge_and_unmerge_are_inverse(a_values: list[int], b_values: list[int]) -> None:
    a, b = sketch_of(a_values), sketch_of(b_values)
    original = dict(a)
    merge_into(a, b, +1)
    assert a == sketch_of(a_values + b_values)  # merging equals adding the values
    merge_into(a, b, -1)
    assert a == original  # no zero-count buckets left behind
    merge_into(a, original, -1)
    assert a == {}


@given(st.lists(durations, max_size=60), st.lists(durations, max_size=60))
def test_subtracting_first_then_adding_back_also_restores(
    a_values: list[int], b_values: list[int]
) -> None:
    a, b = sketch_of(a_values), sketch_of(b_values)
    original = dict(a)
    merge_into(a, b, -1)  # may go negative per bucket for a while (retraction before arrival)
    merge_into(a, b, +1)
    assert a == original


# --- nearest rank ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("q_num", "q_den"), [(1, 2), (9, 10)])
def test_nearest_rank_is_exact_for_the_reported_quantiles(q_num: int, q_den: int) -> None:
    for n in range(1, 5001):
        expected = max(1, math.ceil(Fraction(q_num, q_den) * n))
        assert nearest_rank(q_num, q_den, n) == expected, n
    # Large counts, where float arithmetic (0.9 * n) would no longer be exact.
    for n in (10**17 + 1, 2**60 + 3, 10**18 - 1):
        assert nearest_rank(q_num, q_den, n) == math.ceil(Fraction(q_num, q_den) * n)


@given(st.integers(0, 1000), st.integers(1, 1000), st.integers(1, 10**12))
def test_nearest_rank_matches_fraction_arithmetic(q_num: int, q_den: int, n: int) -> None:
    q_num = min(q_num, q_den)
    assert nearest_rank(q_num, q_den, n) == max(1, math.ceil(Fraction(q_num, q_den) * n))


# --- team labels ----------------------------------------------------------------------------------

names = st.text(
    st.one_of(
        st.characters(),
        st.sampled_from(['"', "\\", "|", "\n", "\t", "\x00", "\x7f", "\x85", " ", "\u00a0"]),
    ),
    max_size=200,
)


@given(names)
def test_team_label_is_safe_bounded_and_idempotent(name: str) -> None:
    label = team_label(name)
    assert label
    assert len(label) <= MAX_LABEL_LENGTH + len("team-")
    assert not any(ch in label for ch in '"\\|')
    assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in label)
    assert label == label.strip()
    assert "  " not in label
    assert team_label(label) == label
    if label != UNKNOWN:
        assert label.lower() not in {ALL, OTHER, UNKNOWN}


def test_team_label_examples() -> None:
    assert team_label("Billing") == "Billing"
    assert team_label("  Tier 2\tSupport\n") == "Tier 2 Support"
    assert team_label('a"b|c\\d') == "a b c d"
    assert team_label("bell\x07\x00\x1b[31m") == "bell [31m"
    assert team_label("x" * 500) == "x" * MAX_LABEL_LENGTH
    assert team_label("x" * 63 + " yz") == "x" * 63  # trailing space after the cut is dropped
    assert team_label('"|"') == UNKNOWN  # nothing left
    assert team_label("\x00") == UNKNOWN


@pytest.mark.parametrize("reserved", ["all", "ALL", "All", "other", "OTHER", " other ", "Unknown"])
def test_reserved_team_names_are_prefixed(reserved: str) -> None:
    label = team_label(reserved)
    assert label == f"team-{reserved.strip()}"
    assert team_label(label) == label


def test_unknown_stays_unknown() -> None:
    # "unknown" is what a survey without any team gets; a team literally called so merges there.
    assert team_label(UNKNOWN) == UNKNOWN
