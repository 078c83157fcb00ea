"""Mergeable log-linear histograms: percentiles within the stated error, exact merges."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aether_rec.ops.histogram import (
    GroupedHistograms,
    Histogram,
    bucket_bounds,
    bucket_index,
    group_slices,
    log2_rows,
    relative_error,
    render_log2,
)

QS = [0.1, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100]


def _check_percentiles(h: Histogram, x: np.ndarray) -> None:
    err = relative_error(h.precision)
    for q, got in zip(QS, h.percentiles(QS)):
        want = int(np.percentile(x, q, method="inverted_cdf"))
        assert got is not None
        assert abs(got - want) <= err * want + 1e-9, (q, got, want)


@pytest.mark.parametrize(
    "dist",
    ["lognormal", "uniform", "bimodal", "tiny", "huge"],
)
def test_percentiles_match_numpy_within_stated_error(dist: str) -> None:
    rng = np.random.default_rng(7)
    n = 200_000
    if dist == "lognormal":
        x = rng.lognormal(11, 2, n)
    elif dist == "uniform":
        x = rng.uniform(0, 1e9, n)
    elif dist == "bimodal":
        x = np.concatenate([rng.normal(5e4, 1e3, n // 2), rng.normal(5e7, 1e6, n // 2)])
    elif dist == "tiny":
        x = rng.integers(0, 300, n)
    else:
        x = rng.uniform(1e12, 1e15, n)
    x = np.abs(x).astype(np.uint64)
    h = Histogram()
    for part in np.array_split(x, 13):
        h.add(part)
    assert h.total == n
    assert h.min == int(x.min()) and h.max == int(x.max())
    assert h.sum == int(x.astype(object).sum())
    _check_percentiles(h, x)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 2**50), min_size=1, max_size=400),
    st.integers(4, 10),
)
def test_percentiles_any_data(values: list[int], precision: int) -> None:
    x = np.array(values, dtype=np.uint64)
    h = Histogram(precision)
    h.add(x)
    _check_percentiles(h, x)


def test_bucket_index_bounds_hold_the_value() -> None:
    rng = np.random.default_rng(1)
    v = np.concatenate(
        [np.arange(0, 5000), rng.integers(0, 2**53, 50_000), 2 ** np.arange(1, 53) - 1, 2 ** np.arange(1, 53)]
    ).astype(np.uint64)
    idx = bucket_index(v)
    lo, hi = bucket_bounds(idx)
    assert np.all(lo <= v.astype(np.float64)) and np.all(v.astype(np.float64) < hi)
    order = np.argsort(v)
    assert np.all(np.diff(idx[order]) >= 0)  # monotonic
    assert np.all((hi - lo) <= np.maximum(1, lo * 2 * relative_error()))


@pytest.mark.parametrize("precision", [2, 5, 8, 12, 16])
def test_bucket_index_is_the_documented_formula(precision: int) -> None:
    """shift = max(0, bit_length(v) - P), index = shift * 2**(P-1) + (v >> shift), exactly,
    below 2**53, whatever the integer dtype (negative values count as 0)."""
    rng = np.random.default_rng(precision)
    edges = np.concatenate([2 ** np.arange(0, 53) - 1, 2 ** np.arange(0, 53), 2 ** np.arange(0, 52) + 1])
    v = np.concatenate([edges, np.arange(0, 3000), rng.integers(0, 2**53, 20_000)]).astype(np.uint64)
    for lo in (0, 300, 70_000):  # with and without values below 2**P in the array
        part = v[v >= lo]
        want = []
        for x in part.tolist():
            shift = max(0, x.bit_length() - precision)
            want.append(shift * 2 ** (precision - 1) + (x >> shift))
        assert bucket_index(part, precision).tolist() == want
    small = np.array([-5, 0, 3, 255, 256, 70_000], dtype=np.int64)
    unsigned = small.clip(0).astype(np.uint64)
    assert bucket_index(small, precision).tolist() == bucket_index(unsigned, precision).tolist()
    assert bucket_index(small.astype(np.int32), precision).tolist() == bucket_index(small, precision).tolist()
    assert bucket_index(np.zeros(0, np.uint64), precision).tolist() == []


def test_merge_equals_whole_and_roundtrip() -> None:
    rng = np.random.default_rng(3)
    x = rng.lognormal(10, 3, 100_000).astype(np.uint64)
    whole = Histogram()
    whole.add(x)
    parts = [Histogram() for _ in range(5)]
    for h, part in zip(parts, np.array_split(x, 5)):
        h.add(part)
    merged = Histogram()
    for h in reversed(parts):
        merged.merge(h)
    assert merged == whole
    assert Histogram.from_dict(whole.to_dict()) == whole
    assert merged.percentiles(QS) == whole.percentiles(QS)


def test_empty_histogram() -> None:
    h = Histogram()
    assert h.percentile(50) is None
    assert h.summary()["count"] == 0 and h.summary()["max"] is None
    assert h.log2_buckets() == []
    assert render_log2(h) == ["     usecs               : count     distribution"]


def test_grouped_equals_separate() -> None:
    rng = np.random.default_rng(5)
    n = 50_000
    keys = rng.choice([3, 7, 300, 70000], n)
    vals = rng.lognormal(9, 2, n).astype(np.uint64)
    g = GroupedHistograms()
    for sl in np.array_split(np.arange(n), 4):
        g.add(keys[sl], bucket_index(vals[sl]), vals[sl])
    for k in (3, 7, 300, 70000):
        h = Histogram()
        h.add(vals[keys == k])
        assert g.groups[k] == h


def test_group_slices_wide_keys() -> None:
    keys = np.array([5, 1 << 40, 5, 3, 1 << 40], dtype=np.int64)
    ukeys, order, edges = group_slices(keys)
    assert ukeys.tolist() == [3, 5, 1 << 40]
    assert order is not None
    groups = [sorted(order[edges[i] : edges[i + 1]].tolist()) for i in range(3)]
    assert groups == [[3], [0, 2], [1, 4]]


def test_log2_rows_like_biolatency() -> None:
    # values chosen away from power-of-two edges so regrouping is exact
    us = np.array([0, 1, 3, 5, 6, 12, 100, 100, 1500], dtype=np.uint64)
    h = Histogram()
    h.add(us * 1000 + 300)
    rows = log2_rows(h, 1000)
    want = np.bincount(np.where(us < 2, 0, np.floor(np.log2(np.maximum(us, 1)))).astype(int))
    assert rows == want.tolist()
    text = render_log2(h)
    assert text[1].split()[:3] == ["0", "->", "1"]
    assert text[-1].split()[0] == "1024" and "|" in text[-1]
    assert text[0] == "     usecs               : count     distribution"


@pytest.mark.parametrize("case", ["few", "one", "wide", "huge-sums", "signed", "u16-keys"])
def test_dense_groups_fill_as_sorted_groups(case: str) -> None:
    """add_dense (bincount of group * buckets + bucket) gives the histograms, sums, minima
    and maxima of add_grouped (sorted groups), chunk after chunk."""
    from aether_rec.ops.histogram import dense_groups, group_sums

    rng = np.random.default_rng(7)
    dense, sorted_ = GroupedHistograms(), GroupedHistograms()
    for step in range(3):
        n = 5000
        keys = rng.choice([3, 260, 513, 514, 1060], n).astype(np.uint16)
        v = rng.integers(0, 20_000_000, n).astype(np.uint64)
        if case == "one":
            keys[:] = 514
        elif case == "wide":
            v = rng.integers(0, 2**62, n).astype(np.uint64) >> rng.integers(0, 62, n).astype(np.uint64)
        elif case == "huge-sums":
            v = (rng.integers(2**60, 2**63, n).astype(np.uint64) * np.uint64(2)) + np.uint64(step)
        elif case == "signed":
            v = rng.integers(0, 10**9, n).astype(np.int64)
        elif case == "u16-keys":
            keys = rng.integers(0, 65535, n).astype(np.uint16)
        idx = bucket_index(v)
        got = dense_groups(keys)
        assert got is not None
        ukeys, ids = got
        if ids is not None:
            assert np.array_equal(ukeys[ids], keys)
            sums = group_sums(ids, v, ukeys.size)
            want = [int(v[keys == k].sum(dtype=v.dtype)) for k in ukeys.tolist()]
            assert sums == want
        dense.add_dense(ukeys, ids, idx, v)
        sorted_.add_grouped(group_slices(keys), idx, v)
    assert sorted(dense.groups) == sorted(sorted_.groups)
    for k, h in sorted_.groups.items():
        assert dense.groups[k] == h, k
    assert dense_groups(np.array([-1, 2], dtype=np.int64)) is None
    assert dense_groups(np.array([70_000, 2], dtype=np.int64)) is None
