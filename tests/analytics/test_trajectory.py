"""Trajectory cleaning and structuring: behaviour on small known cases, invariants under
Hypothesis, and agreement with MovingPandas and shapely on the same data."""

from __future__ import annotations

import itertools
import warnings
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from cityos.analytics import (
    AnalyticsError,
    build_trajectories,
    filter_max_speed,
    filter_min_length,
    interpolate,
    simplify,
    split_by_gap,
    split_by_stays,
    stay_points,
)
from cityos.analytics._points import as_points
from cityos.model import Trajectories

from .builders import T0, make_traj, stop_and_go
from .strategies import point_streams


def _mpd():  # movingpandas warns at import about optional extras; tests treat warnings as errors
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import movingpandas

    return movingpandas


# MovingPandas 0.23 still uses pandas APIs that pandas 3 deprecates; its warnings are not ours.
movingpandas_warnings = pytest.mark.filterwarnings(
    "ignore::pandas.errors.Pandas4Warning", "ignore::FutureWarning", "ignore::DeprecationWarning"
)


def _mp_collection(df: pd.DataFrame, crs: str = "EPSG:3857"):
    import geopandas as gpd

    mpd = _mpd()
    gdf = gpd.GeoDataFrame(
        df.assign(t=df["t"].dt.tz_localize(None)), geometry=gpd.points_from_xy(df.x, df.y), crs=crs
    )
    return mpd.TrajectoryCollection(gdf, traj_id_col="id", t="t")


# -- splitting ---------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(point_streams(), st.integers(1, 900))
def test_split_by_gap_keeps_every_point_once_and_time_increasing(
    df: pd.DataFrame, gap: int
) -> None:
    out = split_by_gap(df, gap, geographic=False)
    assert len(out) == len(df)
    assert sorted(zip(out.id, out.t, strict=True)) == sorted(zip(df.id, df.t, strict=True))
    for _, g in out.groupby("traj_id", observed=True):
        assert g["t"].is_monotonic_increasing
        assert (g["t"].diff().dropna() <= pd.Timedelta(seconds=gap)).all()
        assert g["id"].nunique() == 1
    # consecutive trajectories of one object are separated by more than the gap
    firsts = out.groupby("traj_id", observed=True)["t"].min()
    lasts = out.groupby("traj_id", observed=True)["t"].max()
    for oid, g in out.groupby("id"):
        names = list(dict.fromkeys(g["traj_id"]))
        for a, b in itertools.pairwise(names):
            assert firsts[b] - lasts[a] > pd.Timedelta(seconds=gap), oid


@movingpandas_warnings
def test_split_by_gap_matches_movingpandas() -> None:
    rng = np.random.default_rng(1)
    frames = []
    for k in range(5):
        steps = rng.choice([10, 20, 700, 3000], size=60, p=[0.5, 0.4, 0.07, 0.03])
        frames.append(
            pd.DataFrame(
                {
                    "id": f"v{k}",
                    "t": pd.Timestamp("2026-01-01", tz="UTC")
                    + pd.to_timedelta(np.cumsum(steps), unit="s"),
                    "x": rng.normal(size=60).cumsum(),
                    "y": rng.normal(size=60).cumsum(),
                }
            )
        )
    df = pd.concat(frames, ignore_index=True)
    ours = split_by_gap(df, "10min", min_points=2, geographic=False)
    mpd = _mpd()
    theirs = mpd.ObservationGapSplitter(_mp_collection(df)).split(gap=timedelta(minutes=10))
    assert ours["traj_id"].nunique() == len(theirs.trajectories)
    ours_sets = sorted(
        tuple(g["t"].dt.tz_localize(None)) for _, g in ours.groupby("traj_id", observed=True)
    )
    theirs_sets = sorted(tuple(tr.df.index) for tr in theirs.trajectories)
    assert ours_sets == theirs_sets


def test_split_rejects_bad_gap_and_missing_columns() -> None:
    df = make_traj([(0, 0), (1, 1)])
    with pytest.raises(AnalyticsError, match="not a duration"):
        split_by_gap(df, "soon")
    with pytest.raises(AnalyticsError, match="lacks column"):
        split_by_gap(df.drop(columns="t"), 60)


def test_filter_min_length_drops_short_and_sparse_trajectories() -> None:
    df = pd.concat(
        [
            make_traj([(0, 0), (300, 0), (600, 0)], oid="long"),
            make_traj([(0, 0), (5, 0), (10, 0)], oid="short"),
            make_traj([(0, 0)], oid="single"),
        ]
    )
    out = filter_min_length(df, 100, geographic=False)
    assert out["id"].unique().tolist() == ["long"]
    assert filter_min_length(df, 0, min_points=3, geographic=False)["id"].nunique() == 2
    assert filter_min_length(df, 0, min_duration=25, geographic=False)["id"].nunique() == 0


# -- cleaning ----------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(point_streams(max_step_s=60), st.floats(1, 30))
def test_filter_max_speed_leaves_no_fast_step(df: pd.DataFrame, vmax: float) -> None:
    out = filter_max_speed(df, vmax * 3.6, geographic=False)
    assert set(out["id"]) == set(df["id"])  # first point of each object always survives
    p = as_points(out, geographic=False)
    same = p.obj[1:] == p.obj[:-1]
    d = np.hypot(np.diff(p.mx), np.diff(p.my))[same]
    dt = np.diff(p.t)[same] / 1000.0
    assert (d <= vmax * dt * (1 + 1e-9)).all()


def test_filter_max_speed_removes_spike_only() -> None:
    xy = [(i * 100.0, 0.0) for i in range(10)]
    xy[4] = (4 * 100.0, 5000.0)  # one GPS spike
    out = filter_max_speed(make_traj(xy), 100, geographic=False)
    assert len(out) == 9 and 5000.0 not in out["y"].tolist()


@settings(max_examples=40, deadline=None)
@given(point_streams(max_step_s=120), st.integers(1, 100))
def test_interpolate_hits_every_interval_on_the_path(df: pd.DataFrame, step: int) -> None:
    out = interpolate(df, step, geographic=False)
    for oid, g in out.groupby("id"):
        src = df[df.id == oid].sort_values("t")
        ts = (g["t"] - src["t"].iloc[0]).dt.total_seconds().to_numpy()
        assert np.allclose(ts, np.arange(len(g)) * step)
        assert g["t"].iloc[-1] <= src["t"].iloc[-1]
        # positions agree with numpy's piecewise-linear interpolation
        tt = (src["t"] - src["t"].iloc[0]).dt.total_seconds().to_numpy()
        assert np.allclose(g["x"], np.interp(ts, tt, src["x"]))
        assert np.allclose(g["y"], np.interp(ts, tt, src["y"]))


# -- simplification ----------------------------------------------------------------------
def _max_removed_error(df: pd.DataFrame, kept: pd.DataFrame, sed: bool) -> float:
    worst = 0.0
    for oid, g in df.sort_values(["id", "t"]).groupby("id"):
        k = kept[kept.id == oid]
        kt = (k["t"] - T0).dt.total_seconds().to_numpy()
        for _, row in g.iterrows():
            i = np.searchsorted(kt, (row.t - T0).total_seconds(), side="right") - 1
            if i >= len(k) - 1:
                continue
            a, b = k.iloc[i], k.iloc[i + 1]
            if sed:
                span = (b.t - a.t).total_seconds()
                r = (row.t - a.t).total_seconds() / span if span else 0.0
                px, py = a.x + r * (b.x - a.x), a.y + r * (b.y - a.y)
                d = float(np.hypot(row.x - px, row.y - py))
            else:
                # textbook point-to-segment distance (a zero-length segment is its point)
                dx, dy = b.x - a.x, b.y - a.y
                den = dx * dx + dy * dy
                r = (
                    min(1.0, max(0.0, ((row.x - a.x) * dx + (row.y - a.y) * dy) / den))
                    if den > 0
                    else 0.0
                )
                d = float(np.hypot(row.x - (a.x + r * dx), row.y - (a.y + r * dy)))
            worst = max(worst, float(d))
    return worst


@settings(max_examples=50, deadline=None)
@given(
    point_streams(max_objects=2, max_points=30), st.floats(0.5, 300), st.sampled_from(["dp", "sed"])
)
def test_simplify_never_moves_a_point_farther_than_tolerance(
    df: pd.DataFrame, tol: float, method: str
) -> None:
    kept = simplify(df, tol, method=method, geographic=False)  # type: ignore[arg-type]
    assert _max_removed_error(df, kept, sed=method == "sed") <= tol + 1e-6
    for oid, g in df.groupby("id"):  # end points always kept
        k = kept[kept.id == oid]
        assert k["t"].iloc[0] == g["t"].min() and k["t"].iloc[-1] == g["t"].max()


def test_simplify_dp_matches_shapely() -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        xy = rng.normal(size=(200, 2)).cumsum(axis=0) * 50
        df = make_traj(xy)
        kept = simplify(df, 40.0, geographic=False)
        ref = shapely.simplify(shapely.LineString(xy), 40.0, preserve_topology=False)
        assert np.allclose(kept[["x", "y"]].to_numpy(), np.asarray(ref.coords))


def test_simplify_sed_keeps_speed_changes_that_dp_drops() -> None:
    # straight line, but the object waits in the middle: DP drops it all, SED keeps the stop
    xy = [(0, 0), (100, 0), (200, 0), (200, 0), (200, 0), (300, 0), (400, 0)]
    df = make_traj(xy)
    assert len(simplify(df, 1.0, geographic=False)) == 2
    assert len(simplify(df, 1.0, method="sed", geographic=False)) > 2


# -- stays -------------------------------------------------------------------------------
def test_stay_points_finds_each_stop() -> None:
    rng = np.random.default_rng(3)
    df = stop_and_go(rng, n_stops=3, stop_pts=20, step_s=30)
    sp = stay_points(df, 50, "5min", geographic=False)
    assert len(sp) == 3
    assert (sp["n_points"] >= 10).all() and (sp["duration_s"] >= 300).all()
    # each stay's span lies inside the stop's 20 points (570 s) plus one step either side
    assert (sp["duration_s"] <= 630).all()


@settings(max_examples=50, deadline=None)
@given(point_streams(max_step_s=120), st.floats(5, 400), st.integers(10, 1800))
def test_stay_points_satisfy_their_definition(df: pd.DataFrame, dist: float, dur: int) -> None:
    sp = stay_points(df, dist, dur, geographic=False)
    p = as_points(df, geographic=False)
    prev_end = -1
    for r in sp.itertuples():
        i, j = r.first_index, r.last_index
        assert p.obj[i] == p.obj[j] and j > prev_end
        assert (p.t[j] - p.t[i]) >= dur * 1000
        d = np.hypot(p.mx[i : j + 1] - p.mx[i], p.my[i : j + 1] - p.my[i])
        assert (d <= dist + 1e-9).all()
        if j + 1 < p.n and p.obj[j + 1] == p.obj[i]:  # the stay is maximal
            assert np.hypot(p.mx[j + 1] - p.mx[i], p.my[j + 1] - p.my[i]) > dist
        prev_end = j


@movingpandas_warnings
def test_stay_points_agree_with_movingpandas_stop_detector() -> None:
    rng = np.random.default_rng(11)
    df = pd.concat(
        [stop_and_go(rng, oid=f"v{k}", n_stops=3, jitter_m=4) for k in range(3)], ignore_index=True
    )
    ours = stay_points(df, 40, "5min", geographic=False)
    mpd = _mpd()
    ranges = mpd.TrajectoryStopDetector(_mp_collection(df)).get_stop_time_ranges(
        max_diameter=40, min_duration=timedelta(minutes=5)
    )
    assert len(ours) == len(ranges) == 9
    theirs = sorted((r.traj_id, r.t_0) for r in ranges)
    mine = sorted(zip(ours.id, ours.t.dt.tz_localize(None), strict=True))
    for (a, ta), (b, tb) in zip(mine, theirs, strict=True):
        assert a == b and abs(ta - tb) <= pd.Timedelta(seconds=60)


def test_split_by_stays_returns_the_moves_between_stops() -> None:
    rng = np.random.default_rng(5)
    df = stop_and_go(rng, n_stops=3, stop_pts=20, move_pts=15)
    trips = split_by_stays(df, 50, "5min", geographic=False)
    sizes = trips.groupby("traj_id", observed=True).size()
    assert len(sizes) == 3 and (sizes >= 14).all()
    sp = stay_points(df, 50, "5min", geographic=False)
    for r in sp.itertuples():  # no trip point falls inside a stay
        assert not ((trips.t >= r.t) & (trips.t <= r.t_end)).any()


# -- build -------------------------------------------------------------------------------
def test_build_trajectories_returns_the_trajectory_model() -> None:
    df = pd.concat(
        [
            make_traj([(116.3 + i * 1e-3, 39.9) for i in range(6)], oid="a"),
            make_traj([(116.4, 39.9 + i * 1e-3) for i in range(3)], oid="b", step_s=900),
        ]
    )
    tr = build_trajectories(df, "5min")
    assert isinstance(tr, Trajectories)
    pdf = tr.to_pandas()
    assert pdf["traj_id"].tolist() == ["a_0"]  # b's points are 15 min apart: single points
    assert len(pdf["times"].iloc[0]) == 6
    geom = shapely.from_wkb(pdf["geometry"].iloc[0])
    assert np.allclose(np.asarray(geom.coords)[:, 0], df.x.to_numpy()[:6])
