"""Point streams as sorted numpy arrays: the common input of every analytics function.

Accepts pandas DataFrames, pyarrow Tables or :class:`~cityos.model.MovingPoints` in canonical
columns, sorts by (id, t) once, and projects lon/lat to local metres for metric work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from cityos.analytics.errors import AnalyticsError
from cityos.geo.distance import EARTH_RADIUS_M
from cityos.model import ID_COL, TIME_COL, TRAJ_COL, X_COL, Y_COL, STFrame

__all__ = ["Points", "as_points", "to_metres", "to_timedelta_ms"]

FloatArray = np.ndarray
IntArray = np.ndarray


def to_timedelta_ms(value: Any, name: str) -> int:
    """Milliseconds in a duration given as seconds (number), a pandas string ("5min") or a
    ``timedelta``."""
    if isinstance(value, int | float | np.integer | np.floating):
        return round(float(value) * 1000)
    try:
        return int(pd.Timedelta(value) / pd.Timedelta(milliseconds=1))
    except (ValueError, TypeError) as exc:
        raise AnalyticsError(
            f"{name}={value!r} is not a duration; pass seconds (e.g. 300), a string such as "
            "'5min', or a datetime.timedelta"
        ) from exc


def to_metres(
    x: FloatArray, y: FloatArray, geographic: bool, lat0: float | None = None
) -> tuple[FloatArray, FloatArray]:
    """Local planar coordinates in metres.

    Lon/lat go through an equirectangular projection about ``lat0`` (the mean latitude by
    default): at city scale (tens of km) its distances are within 0.1 % of haversine, and
    it turns every distance test into cheap Euclidean arithmetic.

    Examples
    --------
    >>> import numpy as np
    >>> mx, my = to_metres(np.array([116.3, 116.4]), np.array([39.9, 39.9]), True)
    >>> round(float(mx[1] - mx[0]))
    8530
    """
    x = np.asarray(x, dtype="float64")
    y = np.asarray(y, dtype="float64")
    if not geographic:
        return x, y
    if lat0 is None:
        lat0 = float(np.nanmean(y)) if len(y) else 0.0
    k = np.pi / 180.0 * EARTH_RADIUS_M
    return x * (k * np.cos(np.radians(lat0))), y * k


@dataclass
class Points:
    """Points sorted by object then time.

    ``obj`` are dense integer codes of ``ids`` (``ids[obj]`` is the original id), ``t`` is
    epoch milliseconds, ``mx``/``my`` are local metres; ``starts`` are the offsets where each
    object's run begins (with ``len`` appended), so per-object work is slicing, not grouping.
    """

    frame: pd.DataFrame  # the sorted input, canonical columns plus any extras
    ids: np.ndarray
    obj: IntArray
    t: IntArray
    x: FloatArray
    y: FloatArray
    mx: FloatArray
    my: FloatArray
    geographic: bool
    lat0: float

    @property
    def n(self) -> int:
        return len(self.t)

    def run_starts(self, key: IntArray | None = None) -> IntArray:
        """Offsets where a run of equal ``key`` (default: object) begins, plus ``n``."""
        k = self.obj if key is None else key
        if len(k) == 0:
            return np.zeros(1, dtype=np.int64)
        brk = np.flatnonzero(k[1:] != k[:-1]) + 1
        return np.concatenate(([0], brk, [len(k)])).astype(np.int64)

    def subset(self, keep: np.ndarray) -> Points:
        """The points where boolean mask (or index array) ``keep`` selects, order kept."""
        return Points(
            self.frame.iloc[keep].reset_index(drop=True) if len(self.frame.columns) else self.frame,
            self.ids,
            self.obj[keep],
            self.t[keep],
            self.x[keep],
            self.y[keep],
            self.mx[keep],
            self.my[keep],
            self.geographic,
            self.lat0,
        )


def _time_ms(col: Any) -> IntArray:
    s = pd.Series(col)
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        if getattr(s.dt, "tz", None) is not None:
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        return np.asarray(s.to_numpy(dtype="datetime64[ms]").astype(np.int64))
    if pd.api.types.is_numeric_dtype(s.dtype):
        return np.asarray(s.to_numpy(dtype="float64") * 1000, dtype=np.int64)  # seconds
    return _time_ms(pd.to_datetime(s, utc=True, format="ISO8601"))


def as_points(data: Any, geographic: bool | None = None, *, by: str = ID_COL) -> Points:
    """Sort and unpack a point stream.

    Parameters
    ----------
    data:
        DataFrame / pyarrow Table / :class:`~cityos.model.STFrame` with ``id``, ``t``, ``x``,
        ``y`` (``t`` as timestamps, strings, or epoch seconds).
    geographic:
        Whether x/y are lon/lat. ``None`` guesses: lon/lat when every value fits in
        [-180, 180] × [-90, 90].
    by:
        Column that names the object (``id``; ``traj_id`` to work per trajectory).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"id": ["b", "a", "a"], "t": [5, 2, 1], "x": [0., 1., 0.], "y": [0.] * 3})
    >>> p = as_points(df, geographic=False)
    >>> p.ids[p.obj].tolist(), p.t.tolist()
    (['a', 'a', 'b'], [1000, 2000, 5000])
    """
    if isinstance(data, STFrame):
        geographic = data.schema_.geographic if geographic is None else geographic
        data = data.to_arrow()
    if isinstance(data, pa.Table | pa.RecordBatch):
        data = data.to_pandas()
    if not isinstance(data, pd.DataFrame):
        raise AnalyticsError(
            f"cannot read points from {type(data).__name__}; pass a pandas DataFrame, a pyarrow "
            "Table or a MovingPoints frame with columns id, t, x, y"
        )
    missing = [c for c in (by, TIME_COL, X_COL, Y_COL) if c not in data.columns]
    if missing:
        raise AnalyticsError(
            f"point data lacks column(s) {missing} (has {list(data.columns)}); rename them to the "
            "canonical names id, t, x, y (see cityos.model)"
        )
    t = _time_ms(data[TIME_COL])
    codes, ids = pd.factorize(data[by], sort=True)
    codes = np.asarray(codes, dtype=np.int64)
    if (codes < 0).any():
        raise AnalyticsError(f"column {by!r} has missing values; every point needs an object id")
    order = np.lexsort((t, codes))
    if np.any(order != np.arange(len(order))):
        data = data.iloc[order]
        codes, t = codes[order], t[order]
    frame = data.reset_index(drop=True)
    x = frame[X_COL].to_numpy(dtype="float64")
    y = frame[Y_COL].to_numpy(dtype="float64")
    if geographic is None:
        geographic = bool(
            len(x) == 0 or (np.nanmax(np.abs(x)) <= 180 and np.nanmax(np.abs(y)) <= 90)
        )
    lat0 = float(np.nanmean(y)) if (geographic and len(y)) else 0.0
    mx, my = to_metres(x, y, geographic, lat0)
    return Points(frame, np.asarray(ids), codes, t, x, y, mx, my, geographic, lat0)


def segment_names(p: Points, seg: IntArray) -> tuple[np.ndarray, IntArray]:
    """Per-segment ``traj_id`` strings ``"<id>_<k>"`` (k counts within the object) and the
    segment code of every point; names are built per segment, not per point."""
    _, first = np.unique(seg, return_index=True)
    seg_obj = p.obj[first]
    starts = p.run_starts(seg_obj) if len(seg_obj) else np.zeros(1, dtype=np.int64)
    k = np.arange(len(seg_obj)) - np.repeat(starts[:-1], np.diff(starts))
    names = np.array([f"{i}_{j}" for i, j in zip(p.ids[seg_obj], k, strict=True)], dtype=object)
    _, code = np.unique(seg, return_inverse=True)
    return names, code.astype(np.int64)


def with_segments(p: Points, seg: IntArray) -> pd.DataFrame:
    """The points' frame with a categorical ``traj_id`` column from segment codes."""
    names, code = segment_names(p, seg)
    out = p.frame.copy()
    out[TRAJ_COL] = (
        pd.Categorical.from_codes(code, categories=pd.Index(names)) if len(names) else []
    )
    return out
