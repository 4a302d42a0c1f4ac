"""Similarity kernels and top-k search against brute force and independent
implementations (shapely's Hausdorff; scikit-learn's DBSCAN)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cityos.analytics import cluster_stays, dbscan, top_k_similar, trajectory_distance
from cityos.geo import hausdorff, lcss

coords = arrays("float64", st.tuples(st.integers(1, 12), st.just(2)), elements=st.floats(-100, 100))


@settings(max_examples=80, deadline=None)
@given(coords, coords)
def test_hausdorff_matches_shapely_on_point_sets(a: np.ndarray, b: np.ndarray) -> None:
    ref = shapely.hausdorff_distance(shapely.multipoints(a), shapely.multipoints(b))
    assert np.isclose(hausdorff(a, b, geographic=False), ref)


def _lcss_ref(a: np.ndarray, b: np.ndarray, eps: float) -> float:
    n, m = len(a), len(b)
    L = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            if np.hypot(*(a[i - 1] - b[j - 1])) <= eps:
                L[i][j] = L[i - 1][j - 1] + 1
            else:
                L[i][j] = max(L[i - 1][j], L[i][j - 1])
    return 1 - L[n][m] / min(n, m)


@settings(max_examples=80, deadline=None)
@given(coords, coords, st.floats(1, 80))
def test_lcss_matches_textbook_recurrence(a: np.ndarray, b: np.ndarray, eps: float) -> None:
    assert np.isclose(lcss(a, b, eps, geographic=False), _lcss_ref(a, b, eps))


@settings(max_examples=30, deadline=None)
@given(
    st.integers(0, 10_000),
    st.sampled_from(["dtw", "frechet", "hausdorff", "lcss"]),
    st.integers(1, 5),
)
def test_top_k_equals_full_scan(seed: int, metric: str, k: int) -> None:
    rng = np.random.default_rng(seed)
    frames = [
        pd.DataFrame(
            {
                "id": f"c{i}",
                "t": np.arange(n),
                "x": rng.normal(size=n).cumsum() * 50 + rng.uniform(-500, 500),
                "y": rng.normal(size=n).cumsum() * 50,
            }
        )
        for i, n in enumerate(rng.integers(2, 15, 12))
    ]
    df = pd.concat(frames, ignore_index=True)
    q = np.column_stack([rng.normal(size=8).cumsum() * 50, rng.normal(size=8).cumsum() * 50])
    got = top_k_similar(q, df, k, metric, eps_m=60, geographic=False)  # type: ignore[arg-type]
    full = sorted(
        (
            trajectory_distance(q, f[["x", "y"]].to_numpy(), metric, eps_m=60, geographic=False),  # type: ignore[arg-type]
            f["id"].iloc[0],
        )
        for f in frames
    )[:k]
    assert np.allclose(got["distance"], [d for d, _ in full])


def test_dbscan_matches_scikit_learn() -> None:
    from sklearn.cluster import DBSCAN

    rng = np.random.default_rng(4)
    centres = rng.uniform(0, 5000, (6, 2))
    xy = np.vstack(
        [c + rng.normal(0, 60, (80, 2)) for c in centres] + [rng.uniform(0, 5000, (100, 2))]
    )
    df = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1]})
    ours = dbscan(df, 50, 5, geographic=False)
    model = DBSCAN(eps=50, min_samples=5).fit(xy)
    ref = model.labels_
    core = np.zeros(len(xy), bool)
    core[model.core_sample_indices_] = True
    assert ((ours == -1) == (ref == -1)).all()
    # the same partition of core points (cluster numbers may differ)
    pairs = set(zip(ours[core], ref[core], strict=True))
    assert len(pairs) == len(set(ours[core])) == len(set(ref[core]))
    mapping = dict(pairs)
    # border points join a cluster in reach of them; sklearn picks by visiting order
    border = (~core) & (ref >= 0)
    for i in np.flatnonzero(border):
        near = core & (np.hypot(*(xy - xy[i]).T) <= 50)
        assert mapping[ours[i]] in set(ref[near])


def test_cluster_stays_groups_places() -> None:
    stays = pd.DataFrame(
        {
            "id": ["a", "b", "c", "a", "b"],
            "x": [116.300, 116.3003, 116.3001, 116.35, 116.3502],
            "y": 39.9,
            "duration_s": [600.0, 300, 100, 900, 60],
            "t": pd.to_datetime(range(5), unit="h", utc=True),
        }
    )
    out = cluster_stays(stays, 50, 2)
    assert out["stays"].tolist() == [3, 2] and out["objects"].tolist() == [3, 2]
    assert out["total_duration_s"].tolist() == [1000.0, 960.0]
