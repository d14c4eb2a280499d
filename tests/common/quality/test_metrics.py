"""Metrics: the bootstrap interval of a mean, against a direct numpy transcription and known cases."""

import numpy as np

from common.quality import metrics


def _direct(values, groups, n, seed, level=0.95):
    """The percentile bootstrap written out: resample (whole groups of) items, take the mean, n times."""
    rng = np.random.default_rng(seed)
    values = np.asarray(values, np.float64)
    if groups is None:
        means = [values[rng.integers(0, len(values), len(values))].mean() for _ in range(n)]
    else:
        labels = np.unique(groups)
        members = [np.flatnonzero(np.asarray(groups) == g) for g in labels]
        picks = rng.integers(0, len(labels), (n, len(labels)))
        means = [np.concatenate([values[members[g]] for g in p]).mean() for p in picks]
    return tuple(np.percentile(means, [50 * (1 - level), 50 * (1 + level)]))


def test_matches_the_direct_transcription_with_and_without_groups():
    v = np.random.default_rng(1).normal(size=30)
    assert np.allclose(metrics.bootstrap_mean_ci(v, n=500, seed=3), _direct(v, None, 500, 3))
    groups = np.arange(30) % 7  # unequal group sizes (5 and 4 items)
    assert np.allclose(metrics.bootstrap_mean_ci(v, groups, n=500, seed=3), _direct(v, groups, 500, 3))


def test_known_cases():
    assert metrics.bootstrap_mean_ci(np.full(10, 2.5)) == (2.5, 2.5)  # no spread, no interval
    v = np.random.default_rng(0).normal(1.0, 1.0, size=400)
    lo, hi = metrics.bootstrap_mean_ci(v)
    se = v.std() / np.sqrt(len(v))
    assert lo < v.mean() < hi and abs((hi - lo) - 2 * 1.96 * se) < 0.25 * (2 * 1.96 * se)  # ≈ the normal interval
    # items that move together in groups: the grouped interval is wider than the one that treats them as independent
    g = np.repeat(np.arange(8), 10)
    clustered = np.repeat(np.random.default_rng(2).normal(size=8), 10) + 0.01 * np.random.default_rng(3).normal(size=80)
    lo_i, hi_i = metrics.bootstrap_mean_ci(clustered)
    lo_g, hi_g = metrics.bootstrap_mean_ci(clustered, g)
    assert hi_g - lo_g > 2 * (hi_i - lo_i)
