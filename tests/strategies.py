"""Hypothesis strategies shared by the test suite."""

from __future__ import annotations

import pandas as pd
from hypothesis import strategies as st

T0 = pd.Timestamp("2026-03-02T00:00:00Z")
LON = (116.2, 116.6)
LAT = (39.7, 40.1)


@st.composite
def boxes(
    draw: st.DrawFn, lon: tuple[float, float] = LON, lat: tuple[float, float] = LAT
) -> tuple[float, float, float, float]:
    """Query boxes from tiny to the whole extent."""
    x0 = draw(st.floats(lon[0] - 0.05, lon[1]))
    y0 = draw(st.floats(lat[0] - 0.05, lat[1]))
    w = draw(st.floats(1e-5, 0.5))
    h = draw(st.floats(1e-5, 0.5))
    return (x0, y0, x0 + w, y0 + h)


@st.composite
def windows(draw: st.DrawFn, hours: float = 48) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """Time windows [start, end), either end possibly open."""
    a = draw(st.floats(-2, hours))
    b = draw(st.floats(0, hours))
    start = None if draw(st.booleans()) and a < 0 else T0 + pd.Timedelta(hours=max(a, 0))
    end = None if draw(st.integers(0, 5)) == 0 else (start or T0) + pd.Timedelta(hours=b)
    return start, end


@st.composite
def point_records(draw: st.DrawFn, max_rows: int = 300) -> pd.DataFrame:
    """Small batches of moving-point records, possibly with repeated keys."""
    n = draw(st.integers(1, max_rows))
    ids = draw(st.lists(st.sampled_from([f"v{i}" for i in range(8)]), min_size=n, max_size=n))
    secs = draw(st.lists(st.integers(0, 3 * 86400), min_size=n, max_size=n))
    xs = draw(st.lists(st.floats(*LON), min_size=n, max_size=n))
    ys = draw(st.lists(st.floats(*LAT), min_size=n, max_size=n))
    return pd.DataFrame(
        {"id": ids, "t": [T0 + pd.Timedelta(seconds=s) for s in secs], "x": xs, "y": ys}
    )


#: The same extent as LON/LAT, in UTM zone 50N metres (EPSG:32650).
UTM_X = (432_000.0, 467_000.0)
UTM_Y = (4_395_000.0, 4_440_000.0)


@st.composite
def utm_boxes(draw: st.DrawFn) -> tuple[float, float, float, float]:
    """Query boxes in UTM zone 50N metres, from a few metres to the whole extent."""
    x0 = draw(st.floats(UTM_X[0] - 5_000, UTM_X[1]))
    y0 = draw(st.floats(UTM_Y[0] - 5_000, UTM_Y[1]))
    w = draw(st.floats(1.0, 40_000.0))
    h = draw(st.floats(1.0, 40_000.0))
    return (x0, y0, x0 + w, y0 + h)
