"""Trajectory cleaning and structuring on point streams: gap splitting, speed filtering,
interpolation, simplification, stay points and segmentation. Every operation works on all
objects at once through sorted arrays; Python loops run per stay or per level, never per point.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import shapely

from cityos.analytics._points import Points, as_points, to_timedelta_ms, with_segments
from cityos.analytics.errors import AnalyticsError
from cityos.geo import WGS84
from cityos.model import (
    GEOM_COL,
    ID_COL,
    TIME_COL,
    TIMES_COL,
    TRAJ_COL,
    X_COL,
    Y_COL,
    Trajectories,
)

__all__ = [
    "build_trajectories",
    "filter_max_speed",
    "filter_min_length",
    "interpolate",
    "simplify",
    "split_by_gap",
    "split_by_stays",
    "stay_points",
]


# -- helpers -----------------------------------------------------------------------------
def _ragged_arange(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for every pair, without a Python loop."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offs = np.cumsum(counts) - counts
    return np.repeat(starts - offs, counts) + np.arange(total, dtype=np.int64)


def _step_lengths(p: Points, seg: np.ndarray | None = None) -> np.ndarray:
    """Metres from each point's predecessor (0 at the start of each object/segment)."""
    key = p.obj if seg is None else seg
    d = np.zeros(p.n)
    if p.n > 1:
        d[1:] = np.hypot(np.diff(p.mx), np.diff(p.my))
        d[1:][key[1:] != key[:-1]] = 0.0
    return d


def _points_by_traj(data: Any, geographic: bool | None) -> Points:
    """Sort by trajectory when a ``traj_id`` exists (segments stay intact), else by object."""
    by = TRAJ_COL if isinstance(data, pd.DataFrame) and TRAJ_COL in data.columns else ID_COL
    return as_points(data, geographic, by=by)


# -- splitting ---------------------------------------------------------------------------
def split_by_gap(
    points: Any, gap: Any, *, min_points: int = 1, geographic: bool | None = None
) -> pd.DataFrame:
    """Split each object's points into trajectories wherever the time between consecutive
    points exceeds ``gap``.

    Parameters
    ----------
    points:
        Point stream with ``id``, ``t``, ``x``, ``y`` (DataFrame, Arrow table or MovingPoints).
    gap:
        Largest allowed time between consecutive points of one trajectory (seconds, a pandas
        duration string such as ``"10min"``, or a timedelta). A gap equal to it does not split.
    min_points:
        Trajectories with fewer points are dropped (1 keeps every point).

    Returns
    -------
    pandas.DataFrame
        The points sorted by (id, t) with a ``traj_id`` column ``"<id>_<k>"``.

    Examples
    --------
    >>> df = pd.DataFrame({"id": "a", "t": [0, 10, 20, 900, 910], "x": 0.0, "y": 0.0})
    >>> split_by_gap(df, "5min")["traj_id"].tolist()
    ['a_0', 'a_0', 'a_0', 'a_1', 'a_1']
    """
    p = as_points(points, geographic)
    g = to_timedelta_ms(gap, "gap")
    new = np.ones(p.n, dtype=bool)
    if p.n > 1:
        new[1:] = (p.obj[1:] != p.obj[:-1]) | (np.diff(p.t) > g)
    seg = np.cumsum(new) - 1
    if min_points > 1 and p.n:
        counts = np.bincount(seg)
        keep = counts[seg] >= min_points
        p, seg = p.subset(keep), seg[keep]
    return with_segments(p, seg)


def filter_min_length(
    points: Any,
    min_length_m: float = 0.0,
    *,
    min_points: int = 2,
    min_duration: Any = 0,
    geographic: bool | None = None,
) -> pd.DataFrame:
    """Drop trajectories (by ``traj_id``, else by ``id``) shorter than ``min_length_m``
    metres along their path, with fewer than ``min_points`` points, or lasting less than
    ``min_duration``.

    Examples
    --------
    >>> df = pd.DataFrame({"id": ["a", "a", "b", "b"], "t": [0, 10, 0, 10],
    ...                    "x": [0.0, 500.0, 0.0, 5.0], "y": 0.0})
    >>> filter_min_length(df, 100, geographic=False)["id"].unique().tolist()
    ['a']
    """
    p = _points_by_traj(points, geographic)
    if p.n == 0:
        return p.frame.copy()
    seg = p.obj
    length = np.bincount(seg, weights=_step_lengths(p, seg))
    starts = p.run_starts(seg)
    n = np.diff(starts)
    dur = p.t[starts[1:] - 1] - p.t[starts[:-1]]
    ok = (
        (length >= min_length_m)
        & (n >= min_points)
        & (dur >= to_timedelta_ms(min_duration, "min_duration"))
    )
    out: pd.DataFrame = p.frame[ok[seg]].reset_index(drop=True)
    return out


# -- cleaning ----------------------------------------------------------------------------
def filter_max_speed(
    points: Any, max_speed_kmh: float, *, geographic: bool | None = None, max_rounds: int = 1000
) -> pd.DataFrame:
    """Remove noise points implying a speed above ``max_speed_kmh``.

    Isolated spikes (too fast both into and out of a point) go first, all at once; then any
    point still reached too fast from its kept predecessor is dropped, round by round, until
    every remaining step is at most the limit. The first point of each object is kept.

    Examples
    --------
    >>> df = pd.DataFrame({"id": "a", "t": [0, 10, 20, 30], "x": [0.0, 100.0, 5000.0, 300.0],
    ...                    "y": 0.0})
    >>> filter_max_speed(df, 120, geographic=False)["x"].tolist()
    [0.0, 100.0, 300.0]
    """
    p = _points_by_traj(points, geographic)
    limit = max_speed_kmh / 3.6
    keep = np.ones(p.n, dtype=bool)

    def speeds(idx: np.ndarray) -> np.ndarray:
        """Speed (m/s) into each kept point from the previous kept point; -1 at run starts."""
        s = np.full(len(idx), -1.0)
        if len(idx) > 1:
            d = np.hypot(np.diff(p.mx[idx]), np.diff(p.my[idx]))
            dt = np.diff(p.t[idx]) / 1000.0
            with np.errstate(divide="ignore", invalid="ignore"):
                v = np.where(dt > 0, d / np.where(dt > 0, dt, 1.0), np.where(d > 0, np.inf, 0.0))
            same = p.obj[idx][1:] == p.obj[idx][:-1]
            s[1:] = np.where(same, v, -1.0)
        return s

    for phase in ("spikes", "steps"):
        for _ in range(max_rounds):
            idx = np.flatnonzero(keep)
            v_in = speeds(idx)
            bad = v_in > limit
            if phase == "spikes":
                v_out = np.append(v_in[1:], -1.0)
                bad &= v_out > limit
            if not bad.any():
                break
            keep[idx[bad]] = False
    return p.frame[keep].reset_index(drop=True)


def interpolate(points: Any, interval: Any, *, geographic: bool | None = None) -> pd.DataFrame:
    """Resample each trajectory (``traj_id``, else ``id``) at a fixed time interval by
    linear interpolation, from its first time to its last.

    Returns a DataFrame with ``id`` (and ``traj_id`` when given), ``t``, ``x``, ``y``.

    Examples
    --------
    >>> df = pd.DataFrame({"id": "a", "t": [0, 10], "x": [0.0, 10.0], "y": [0.0, 0.0]})
    >>> interpolate(df, 2.5, geographic=False)["x"].tolist()
    [0.0, 2.5, 5.0, 7.5, 10.0]
    """
    p = _points_by_traj(points, geographic)
    step = to_timedelta_ms(interval, "interval")
    if step <= 0:
        raise AnalyticsError(f"interval must be positive, got {interval!r}")
    starts = p.run_starts()
    if p.n == 0:
        return pd.DataFrame(
            {ID_COL: [], TIME_COL: pd.to_datetime([], utc=True), X_COL: [], Y_COL: []}
        )
    t0, t1 = p.t[starts[:-1]], p.t[starts[1:] - 1]
    counts = (t1 - t0) // step + 1
    seg = np.repeat(np.arange(len(t0)), counts)
    tq = np.repeat(t0, counts) + (_ragged_arange(np.zeros(len(t0), np.int64), counts) * step)
    # position of each query among its own segment's points: search within the segment's
    # slice by offsetting times so that segments never interleave.
    span = int(p.t.max() - p.t.min()) + 1
    base = p.t - p.t.min()
    key = p.obj.astype(np.int64) * span + base
    qkey = seg.astype(np.int64) * span + (tq - p.t.min())
    j = np.searchsorted(key, qkey, side="right") - 1
    j = np.clip(j, starts[:-1][seg], starts[1:][seg] - 1)
    k = np.minimum(j + 1, starts[1:][seg] - 1)
    dt = (p.t[k] - p.t[j]).astype("float64")
    w = np.divide(tq - p.t[j], dt, out=np.zeros(len(tq)), where=dt > 0)
    out = pd.DataFrame(
        {
            ID_COL: p.frame[ID_COL].to_numpy()[starts[:-1]][seg],
            TIME_COL: pd.to_datetime(tq, unit="ms", utc=True),
            X_COL: p.x[j] + w * (p.x[k] - p.x[j]),
            Y_COL: p.y[j] + w * (p.y[k] - p.y[j]),
        }
    )
    if TRAJ_COL in p.frame.columns:
        out.insert(1, TRAJ_COL, p.frame[TRAJ_COL].to_numpy()[starts[:-1]][seg])
    return out


def simplify(
    points: Any,
    tolerance_m: float,
    *,
    method: Literal["dp", "sed"] = "dp",
    geographic: bool | None = None,
) -> pd.DataFrame:
    """Simplify each trajectory (``traj_id``, else ``id``) keeping a subset of its points.

    ``method="dp"`` is Douglas-Peucker: every removed point lies within ``tolerance_m`` of
    the kept segment that replaces it. ``method="sed"`` is the time-aware variant (top-down
    time ratio): every removed point lies within ``tolerance_m`` of where the kept segment
    places the object *at that point's time* (synchronized Euclidean distance), so speeds
    survive simplification. First and last points are always kept.

    Examples
    --------
    >>> df = pd.DataFrame({"id": "a", "t": [0, 1, 2, 3], "x": [0.0, 1.0, 2.0, 3.0],
    ...                    "y": [0.0, 0.1, 0.0, 0.0]})
    >>> simplify(df, 0.5, geographic=False)["x"].tolist()
    [0.0, 3.0]
    >>> simplify(df, 0.5, method="sed", geographic=False)["x"].tolist()
    [0.0, 3.0]
    """
    if method not in ("dp", "sed"):
        raise AnalyticsError(f"method must be 'dp' or 'sed', not {method!r}")
    p = _points_by_traj(points, geographic)
    keep = simplify_mask(p, tolerance_m, method)
    return p.frame[keep].reset_index(drop=True)


def simplify_mask(p: Points, tolerance_m: float, method: str = "dp") -> np.ndarray:
    """Boolean mask of the points kept by :func:`simplify` (top-down, one level per round:
    every open interval of every trajectory is refined in the same numpy call)."""
    keep = np.zeros(p.n, dtype=bool)
    if p.n == 0:
        return keep
    starts = p.run_starts()
    s, e = starts[:-1], starts[1:] - 1
    keep[s] = True
    keep[e] = True
    x, y, t = p.mx, p.my, p.t.astype("float64")
    while len(s):
        open_ = (e - s) >= 2
        s, e = s[open_], e[open_]
        if not len(s):
            break
        counts = e - s - 1
        idx = _ragged_arange(s + 1, counts)
        grp = np.repeat(np.arange(len(s)), counts)
        ax, ay, bx, by = x[s][grp], y[s][grp], x[e][grp], y[e][grp]
        px, py = x[idx], y[idx]
        dx, dy = bx - ax, by - ay
        if method == "sed":
            ta, tb = t[s][grp], t[e][grp]
            den = tb - ta
            r = np.divide(t[idx] - ta, den, out=np.zeros(len(idx)), where=den > 0)
        else:
            den = dx * dx + dy * dy
            r = np.divide(
                (px - ax) * dx + (py - ay) * dy, den, out=np.zeros(len(idx)), where=den > 0
            )
            r = np.clip(r, 0.0, 1.0)
        d = np.hypot(px - (ax + r * dx), py - (ay + r * dy))
        offs = np.cumsum(counts) - counts
        gmax = np.maximum.reduceat(d, offs)
        pos = np.where(d == gmax[grp], np.arange(len(d)), len(d))
        split = idx[np.minimum.reduceat(pos, offs)]
        refine = gmax > tolerance_m
        split = split[refine]
        keep[split] = True
        s, e = np.concatenate((s[refine], split)), np.concatenate((split, e[refine]))
    return keep


# -- stays and segmentation --------------------------------------------------------------
def _stay_runs(
    p: Points, max_distance_m: float, min_duration_ms: int
) -> tuple[np.ndarray, np.ndarray]:
    """First and last index of every stay (Li et al. 2008): a point ``i`` anchors a stay when
    every following point up to at least ``min_duration`` later lies within
    ``max_distance_m`` of it; the stay runs to the last such point, and the next anchor is
    searched after it."""
    n = p.n
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = p.run_starts()
    end = np.repeat(starts[1:], np.diff(starts))  # exclusive end of each point's object
    span = int(p.t.max() - p.t.min()) + min_duration_ms + 1
    key = p.obj.astype(np.int64) * span + (p.t - p.t.min())
    # m[i]: first point at least min_duration after i (same object, else no stay possible)
    m = np.searchsorted(key, key + min_duration_ms, side="left")
    cand = np.flatnonzero((m < end) & (m > np.arange(n)))
    mc = m[cand]
    r2 = max_distance_m * max_distance_m
    # Phase 1, vectorised over anchors: walk forward until a point leaves the disc (reject)
    # or the window is covered (qualify). Moving points die at the first step.
    qualified = []
    active, lim, k = cand, mc, 1
    while len(active):
        j = active + k
        ok = (p.mx[j] - p.mx[active]) ** 2 + (p.my[j] - p.my[active]) ** 2 <= r2
        done = ok & (j >= lim)
        qualified.append(active[done])
        cont = ok & ~done
        active, lim, k = active[cont], lim[cont], k + 1
    qual = np.sort(np.concatenate(qualified)) if qualified else np.zeros(0, np.int64)
    # Phase 2, one iteration per stay: extend the earliest qualified anchor, skip past it.
    first: list[int] = []
    last: list[int] = []
    pos = 0
    while pos < len(qual):
        a = int(qual[pos])
        b = int(m[a])
        stop = int(end[a])
        chunk = 64
        while b + 1 < stop:
            hi = min(stop, b + 1 + chunk)
            seg = slice(b + 1, hi)
            out = (p.mx[seg] - p.mx[a]) ** 2 + (p.my[seg] - p.my[a]) ** 2 > r2
            if out.any():
                b = b + int(np.argmax(out))
                break
            b = hi - 1
            chunk *= 2
        first.append(a)
        last.append(b)
        pos = int(np.searchsorted(qual, b + 1, side="left"))
    return np.asarray(first, dtype=np.int64), np.asarray(last, dtype=np.int64)


def stay_points(
    points: Any,
    max_distance_m: float = 200.0,
    min_duration: Any = "5min",
    *,
    geographic: bool | None = None,
) -> pd.DataFrame:
    """Detect stay points: places where an object remained within ``max_distance_m`` of
    where it arrived for at least ``min_duration``.

    Returns
    -------
    pandas.DataFrame
        One row per stay: ``id``, ``t`` (arrival), ``t_end`` (departure), ``x``, ``y`` (mean
        position), ``n_points``, ``duration_s``, ``first_index``/``last_index`` (rows of the
        (id, t)-sorted input).

    Examples
    --------
    >>> df = pd.DataFrame({"id": "a", "t": range(0, 1000, 60), "y": 0.0,
    ...                    "x": [0.0, 5.0, 3.0, 1.0, 4.0, 2.0, 500.0, 1000.0, 1500.0, 2000.0,
    ...                          2001.0, 2003.0, 2002.0, 2000.0, 2001.0, 2002.0, 2003.0]})
    >>> sp = stay_points(df, 50, "4min", geographic=False)
    >>> sp[["t", "n_points"]].assign(t=sp.t.dt.strftime("%M:%S")).values.tolist()
    [['00:00', 6], ['09:00', 8]]
    """
    p = _points_by_traj(points, geographic)
    first, last = _stay_runs(p, max_distance_m, to_timedelta_ms(min_duration, "min_duration"))
    return _stays_frame(p, first, last)


def _stays_frame(p: Points, first: np.ndarray, last: np.ndarray) -> pd.DataFrame:
    n_pts = last - first + 1
    cx = np.concatenate(([0.0], np.cumsum(p.x)))
    cy = np.concatenate(([0.0], np.cumsum(p.y)))
    out = pd.DataFrame(
        {
            ID_COL: p.frame[ID_COL].to_numpy()[first] if len(first) else np.array([], dtype=object),
            TIME_COL: pd.to_datetime(p.t[first], unit="ms", utc=True),
            "t_end": pd.to_datetime(p.t[last], unit="ms", utc=True),
            X_COL: (cx[last + 1] - cx[first]) / np.maximum(n_pts, 1),
            Y_COL: (cy[last + 1] - cy[first]) / np.maximum(n_pts, 1),
            "n_points": n_pts,
            "duration_s": (p.t[last] - p.t[first]) / 1000.0,
            "first_index": first,
            "last_index": last,
        }
    )
    if TRAJ_COL in p.frame.columns:
        out.insert(1, TRAJ_COL, p.frame[TRAJ_COL].to_numpy()[first])
    return out


def split_by_stays(
    points: Any,
    max_distance_m: float = 200.0,
    min_duration: Any = "5min",
    *,
    min_points: int = 2,
    geographic: bool | None = None,
) -> pd.DataFrame:
    """Cut each object's points into trips at its stays: points inside a stay are removed
    and each run of moving points between stays becomes one trajectory (``traj_id``).

    Examples
    --------
    >>> df = pd.DataFrame({"id": "a", "t": range(0, 900, 60), "y": 0.0,
    ...                    "x": [0.0, 500.0, 1000.0, 1500.0, 2000.0, 2001.0, 2002.0, 2001.0,
    ...                          2000.0, 2001.0, 2002.0, 2500.0, 3000.0, 3500.0, 4000.0]})
    >>> split_by_stays(df, 50, "4min", geographic=False).groupby("traj_id").size().tolist()
    [4, 4]
    """
    p = _points_by_traj(points, geographic)
    first, last = _stay_runs(p, max_distance_m, to_timedelta_ms(min_duration, "min_duration"))
    in_stay = np.zeros(p.n + 1, dtype=np.int64)
    np.add.at(in_stay, first, 1)
    np.add.at(in_stay, last + 1, -1)
    moving = np.cumsum(in_stay)[: p.n] == 0
    new = np.ones(p.n, dtype=bool)
    if p.n > 1:
        # a new trip starts at object changes and right after each stay
        new[1:] = (p.obj[1:] != p.obj[:-1]) | ~moving[:-1]
    seg = np.cumsum(new) - 1
    keep = moving.copy()
    if min_points > 1 and p.n:
        counts = np.bincount(seg, weights=moving)
        keep &= counts[seg] >= min_points
    sub = p.subset(keep)
    df = with_segments(sub, seg[keep])
    if TRAJ_COL in p.frame.columns:  # keep the caller's trajectory as the object
        df[TRAJ_COL] = df[TRAJ_COL].astype(str)
    return df


def build_trajectories(
    points: Any, gap: Any = "10min", *, min_points: int = 2, geographic: bool | None = None
) -> Trajectories:
    """Build trajectory segments from a point stream: group by object, split at gaps longer
    than ``gap`` (see :func:`split_by_gap`) and return one row per segment as the
    network-based spatio-temporal model (:class:`~cityos.model.Trajectories`), with a
    LineString ``geometry`` and the per-point ``times``.

    A point stream that already has ``traj_id`` is grouped by it without re-splitting when
    ``gap`` is ``None``.

    Examples
    --------
    >>> df = pd.DataFrame({"id": "a", "t": [0, 10, 20, 900, 910], "x": [116.3, 116.31, 116.32,
    ...                    116.4, 116.41], "y": 39.9})
    >>> tr = build_trajectories(df, "5min").to_pandas()
    >>> tr["traj_id"].tolist(), [len(v) for v in tr["times"]]
    (['a_0', 'a_1'], [3, 2])
    """
    if gap is None:
        df = as_points(points, geographic, by=TRAJ_COL).frame
    else:
        df = split_by_gap(points, gap, min_points=min_points, geographic=geographic)
    return trajectories_from_points(df, min_points=min_points)


def trajectories_from_points(
    df: pd.DataFrame,
    *,
    min_points: int = 2,
    edges: list[list[int]] | None = None,
    crs: str | None = None,
) -> Trajectories:
    """Rows of points with ``traj_id`` (sorted by it and time) as a :class:`Trajectories`.

    ``crs`` defaults to WGS84 for lon/lat values; planar values without a named CRS are
    labelled EPSG:3857 (a metric placeholder; pass ``crs`` to record the real one)."""
    codes, uniq = pd.factorize(df[TRAJ_COL], sort=False)
    codes = np.asarray(codes, dtype=np.int64)
    counts = np.bincount(codes, minlength=len(uniq)) if len(codes) else np.zeros(0, np.int64)
    ok = counts >= max(min_points, 2)  # a LineString needs two points
    sel = ok[codes] if len(codes) else np.zeros(0, bool)
    c = codes[sel]
    order = np.argsort(c, kind="stable")
    c = c[order]
    x = df[X_COL].to_numpy(dtype="float64")[sel][order]
    y = df[Y_COL].to_numpy(dtype="float64")[sel][order]
    t = pd.to_datetime(df[TIME_COL], utc=True).to_numpy(dtype="datetime64[ms]")[sel][order]
    segs = np.flatnonzero(ok)
    if len(c):
        geoms = shapely.linestrings(np.column_stack([x, y]), indices=np.searchsorted(segs, c))
    else:
        geoms = np.array([], dtype=object)
    starts = np.concatenate(([0], np.cumsum(counts[segs])))
    times = pa.ListArray.from_arrays(
        pa.array(starts, type=pa.int32()),
        pa.array(t.astype(np.int64), type=pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
    )
    first = np.asarray(starts[:-1], dtype=np.int64)
    ids = df[ID_COL].to_numpy()[sel][order][first] if len(first) else np.array([], dtype=object)
    cols: dict[str, Any] = {
        ID_COL: pa.array([str(v) for v in ids], type=pa.string()),
        TRAJ_COL: pa.array([str(v) for v in np.asarray(uniq)[segs]], type=pa.string()),
        GEOM_COL: pa.array(shapely.to_wkb(geoms) if len(geoms) else [], type=pa.binary()),
        TIMES_COL: times,
        TIME_COL: pa.array(t[first].astype(np.int64) if len(first) else [], type=pa.int64()).cast(
            pa.timestamp("ms", tz="UTC")
        ),
    }
    if edges is not None:
        cols["edges"] = pa.array([edges[i] for i in segs], type=pa.list_(pa.int64()))
    if crs is None:
        geo = bool(len(x) == 0 or (np.abs(x).max() <= 180 and np.abs(y).max() <= 90))
        crs = WGS84 if geo else "EPSG:3857"
    schema = Trajectories.schema(crs=crs)
    return Trajectories.from_arrow(pa.table(cols), schema)  # type: ignore[return-value]
