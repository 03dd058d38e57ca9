"""(max,+)/(min,+) convolution primitives against the naive convolution (chapter *Max-plus convolution*)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from slimlib.maxplus import (is_concave, is_convex, maxplus_concave, maxplus_naive, maxplus_strided, merge_concave,
                             minplus_convex, minplus_naive, minplus_sparse)

finite = st.floats(-100, 100, allow_nan=False, allow_infinity=False)


def seqs(min_size=1, max_size=12, inf=None):
    el = finite if inf is None else st.one_of(finite, finite, finite, st.just(inf))
    return st.lists(el, min_size=min_size, max_size=max_size).map(lambda x: np.array(x, float))


@st.composite
def concave(draw, max_size=12):
    """A concave sequence: first value, then non-increasing increments."""
    n = draw(st.integers(1, max_size))
    inc = sorted(draw(st.lists(finite, min_size=n - 1, max_size=n - 1)), reverse=True)
    return np.concatenate([[draw(finite)], inc]).cumsum()


def by_definition(a, b, op=max):
    out = []
    for k in range(len(a) + len(b) - 1):
        out.append(op(a[i] + b[k - i] for i in range(len(a)) if 0 <= k - i < len(b)))
    return np.array(out)


def test_naive_hand_computed():
    assert maxplus_naive([0, 2, 3], [0, 5]).tolist() == [0, 5, 7, 8]
    assert minplus_naive([0, 2, 3], [0, 5]).tolist() == [0, 2, 3, 8]
    assert maxplus_naive([1, -np.inf, 4], [0, 1]).tolist() == [1, 2, 4, 5]


@settings(max_examples=150)
@given(seqs(inf=-np.inf), seqs(inf=-np.inf))
def test_naive_maxplus_is_the_definition(a, b):
    np.testing.assert_array_equal(maxplus_naive(a, b), by_definition(a, b))


@settings(max_examples=100)
@given(seqs(inf=np.inf), seqs(inf=np.inf))
def test_naive_minplus_is_the_definition(a, b):
    np.testing.assert_array_equal(minplus_naive(a, b), by_definition(a, b, min))


@settings(max_examples=200)
@given(concave(), concave())
def test_concave_merge_equals_naive(a, b):
    np.testing.assert_allclose(maxplus_concave(a, b), maxplus_naive(a, b), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(minplus_convex(-a, -b), minplus_naive(-a, -b), rtol=1e-12, atol=1e-9)
    assert is_concave(maxplus_concave(a, b), 1e-9)


@settings(max_examples=150)
@given(st.lists(concave(8), min_size=1, max_size=5))
def test_merge_many_equals_repeated_naive_and_owner_split(ss):
    values, owner = merge_concave(ss)
    ref = ss[0]
    for s in ss[1:]:
        ref = maxplus_naive(ref, s)
    np.testing.assert_allclose(values, ref, rtol=1e-12, atol=1e-9)
    # the owner prefix counts give a split that attains every value
    for t in range(len(values)):
        c = np.bincount(owner[:t], minlength=len(ss))
        assert c.sum() == t and all(c[j] < len(ss[j]) for j in range(len(ss)))
        assert sum(ss[j][c[j]] for j in range(len(ss))) == pytest.approx(values[t], abs=1e-9)


@settings(max_examples=200)
@given(seqs(inf=-np.inf, max_size=30), seqs(inf=-np.inf, max_size=8), st.integers(1, 5), st.integers(1, 40))
def test_strided_equals_naive_with_spread_sequence(a, b, step, out_len):
    c, arg = maxplus_strided(a, b, step, out_len)
    spread = np.full((len(b) - 1) * step + 1, -np.inf)
    spread[::step] = b
    ref = maxplus_naive(a, spread)
    ref = np.concatenate([ref, np.full(max(0, out_len - len(ref)), -np.inf)])[:out_len]
    np.testing.assert_array_equal(c, ref)
    for q in range(out_len):                                  # the arg-max attains the value
        if np.isfinite(c[q]):
            j = arg[q]
            assert a[q - j * step] + b[j] == c[q]
        else:
            assert arg[q] == -1


@settings(max_examples=200)
@given(seqs(inf=np.inf, max_size=30), st.lists(st.tuples(st.integers(0, 12), finite), min_size=1, max_size=6),
       st.integers(1, 45))
def test_sparse_minplus_equals_naive(a, pairs, out_len):
    off = np.array([p[0] for p in pairs])
    cost = np.array([p[1] for p in pairs])
    c, arg = minplus_sparse(a, off, cost, out_len)
    dense = np.full(off.max() + 1, np.inf)
    for o, x in zip(off, cost):
        dense[o] = min(dense[o], x)
    ref = minplus_naive(a, dense)
    ref = np.concatenate([ref, np.full(max(0, out_len - len(ref)), np.inf)])[:out_len]
    np.testing.assert_array_equal(c, ref)
    for v in range(out_len):
        if np.isfinite(c[v]):
            i = arg[v]
            assert a[v - off[i]] + cost[i] == c[v]


def test_concavity_checks_and_errors():
    assert is_concave([0, 3, 5, 6]) and not is_concave([0, 1, 3])
    assert is_convex([0, 1, 3]) and not is_convex([0, 3, 5, 6])
    with pytest.raises(ValueError, match="concave"):
        maxplus_concave([0, 1, 3], [0, 1])
    with pytest.raises(ValueError, match=r"seqs\[1\]"):
        merge_concave([[0, 2, 3], [0, 1, 3]])
    with pytest.raises(ValueError, match="non-empty"):
        maxplus_naive([], [1])
    with pytest.raises(ValueError, match="NaN"):
        maxplus_naive([np.nan], [1])
    with pytest.raises(ValueError, match=r"a\[0\]"):
        maxplus_naive([np.inf], [1])
    with pytest.raises(ValueError, match="step"):
        maxplus_strided([0, 1], [0, 1], 0)
    with pytest.raises(ValueError, match="offsets"):
        minplus_sparse([0, 1], [-1], [0.0])


def test_merge_many_is_the_top_increments():
    # three concave layers with increments (5, 1), (4, 3), (3): the best split of t experts
    # takes the t largest increments 5, 4, 3, 3, 1 (ties: lower layer first)
    h = [np.array([0, 5, 6]), np.array([0, 4, 7]), np.array([0, 3])]
    values, owner = merge_concave(h)
    assert values.tolist() == [0, 5, 9, 12, 15, 16]
    assert owner.tolist() == [0, 1, 1, 2, 0]
    for t in range(6):
        best = max(h[0][a] + h[1][b] + h[2][c]
                   for a, b, c in itertools.product(range(3), range(3), range(2)) if a + b + c == t)
        assert values[t] == best


@pytest.mark.parametrize("seed", range(3))
def test_strided_large_path_equals_naive(seed):
    # long capacity axes take the loop path of maxplus_strided (m * L > 2**16)
    rng = np.random.default_rng(seed)
    a = rng.normal(size=30_000)
    a[rng.random(a.size) < 0.1] = -np.inf
    b = np.concatenate([[0.0], np.cumsum(rng.random(5))])
    c, arg = maxplus_strided(a, b, 7, 30_000)
    spread = np.full((len(b) - 1) * 7 + 1, -np.inf)
    spread[::7] = b
    np.testing.assert_array_equal(c, maxplus_naive(a, spread)[:30_000])
    ok = np.isfinite(c)
    np.testing.assert_array_equal(a[np.flatnonzero(ok) - 7 * arg[ok]] + b[arg[ok]], c[ok])
