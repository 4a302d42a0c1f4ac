"""How fast is CityOS analytics against MovingPandas on generated vehicle data?

Builds N points with the synthetic city's vehicle simulator, runs stay-point detection,
gap segmentation, HMM map matching and grid aggregation with CityOS, runs MovingPandas'
stop detector and gap splitter (and a plain pandas groupby for the grid) in the same
process, checks the answers agree, and prints a table, one ratio line per baseline and
the map-matching accuracy against the simulator's ground truth.

MovingPandas works per trajectory in Python, so it runs on a subset of whole vehicles
(``--baseline-points``); throughputs (points per second) are compared.

    .venv/bin/python benchmarks/analytics.py --points 1000000
    .venv/bin/python benchmarks/analytics.py --points 10000000
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from cityos.analytics import CellGrid, MapMatcher, grid_flows, split_by_gap, stay_points
from cityos.synth import iter_vehicle_points, make_city

STAY_M, STAY_MIN, GAP, CELL_M = 100.0, 3, "10min", 500.0


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def load(n: int) -> tuple[Any, pd.DataFrame]:
    city = make_city(0)
    parts = [
        c[["id", "t", "x", "y", "true_edge"]]
        for c in iter_vehicle_points(city, n, 1_000_000, seed=0)
    ]
    return city, pd.concat(parts, ignore_index=True)


def subset(df: pd.DataFrame, n: int) -> pd.DataFrame:
    """Whole vehicles, in id order, until about ``n`` points."""
    sizes = df.groupby("id").size()
    keep = sizes.index[np.cumsum(sizes.to_numpy()) <= max(n, int(sizes.iloc[0]))]
    return df[df["id"].isin(keep)].reset_index(drop=True)


def mp_collection(df: pd.DataFrame) -> Any:
    import geopandas as gpd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import movingpandas as mpd

        gdf = gpd.GeoDataFrame(
            df[["id", "t"]].assign(t=df["t"].dt.tz_localize(None)),
            geometry=gpd.points_from_xy(df.x, df.y),
            crs="EPSG:4326",
        )
        return mpd, mpd.TrajectoryCollection(gdf, traj_id_col="id", t="t")


def pandas_grid(df: pd.DataFrame, grid: CellGrid) -> pd.Series:
    """The plain-pandas way (counts only, no flows): floor to cells and hours, group, count."""
    col = ((df.x - grid.xmin) // grid.dx).astype("int64").clip(upper=grid.nx - 1)
    row = ((df.y - grid.ymin) // grid.dy).astype("int64").clip(upper=grid.ny - 1)
    return df.groupby([row * grid.nx + col, df.t.dt.floor("1h")]).size()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--baseline-points", type=int, default=60_000)
    ap.add_argument("--match-points", type=int, default=0, help="points to map-match (0: all)")
    a = ap.parse_args()

    (city, df), t_gen = timed(lambda: load(a.points))
    print(f"generated {len(df):,} points of {df.id.nunique():,} vehicles in {t_gen:.1f} s")
    rows: list[tuple[str, str, int, float]] = []

    sp, t = timed(lambda: stay_points(df, STAY_M, f"{STAY_MIN}min"))
    rows.append(("stay points", "CityOS", len(df), t))
    seg, t = timed(lambda: split_by_gap(df, GAP, min_points=2))
    rows.append(("segmentation (gap)", "CityOS", len(df), t))
    grid = CellGrid.from_metres(
        (float(df.x.min()), float(df.y.min()), float(df.x.max()) + 1e-9, float(df.y.max()) + 1e-9),
        CELL_M,
    )
    g, t = timed(lambda: grid_flows(df, grid, "1h"))
    rows.append(("grid aggregation", "CityOS", len(df), t))
    mm_df = df if not a.match_points else subset(df, a.match_points)
    matcher, t_prep = timed(lambda: MapMatcher(city.edges))
    res, t = timed(lambda: matcher.match(mm_df[["id", "t", "x", "y"]], routes=False))
    rows.append(("map matching", "CityOS", len(mm_df), t + t_prep))
    got = res.points.merge(mm_df[["id", "t", "true_edge"]], on=["id", "t"])
    accuracy = float((got.edge_id == got.true_edge).mean())

    # baselines on whole vehicles
    sub = subset(df, a.baseline_points)
    mpd, tc = mp_collection(sub)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ranges, t = timed(
            lambda: mpd.TrajectoryStopDetector(tc).get_stop_time_ranges(
                max_diameter=2 * STAY_M, min_duration=timedelta(minutes=STAY_MIN)
            )
        )
        rows.append(("stay points", "MovingPandas", len(sub), t))
        split, t = timed(lambda: mpd.ObservationGapSplitter(tc).split(gap=pd.Timedelta(GAP)))
        rows.append(("segmentation (gap)", "MovingPandas", len(sub), t))
    ours_sub_sp = stay_points(sub, STAY_M, f"{STAY_MIN}min")
    ours_sub_seg = split_by_gap(sub, GAP, min_points=2)
    pg, t = timed(lambda: pandas_grid(df, grid))
    rows.append(("grid aggregation", "pandas groupby", len(df), t))

    print()
    print(f"{'operation':<22}{'implementation':<18}{'points':>12}{'seconds':>10}{'points/s':>14}")
    tput: dict[tuple[str, str], float] = {}
    for op, impl, n, sec in rows:
        tput[(op, impl)] = n / sec
        print(f"{op:<22}{impl:<18}{n:>12,}{sec:>10.2f}{n / sec:>14,.0f}")
    print()
    for op, base in (
        ("stay points", "MovingPandas"),
        ("segmentation (gap)", "MovingPandas"),
        ("grid aggregation", "pandas groupby"),
    ):
        print(
            f"ratio {op} CityOS/{base}: {tput[(op, 'CityOS')] / tput[(op, base)]:.1f}x throughput"
        )
    print("ratio map matching CityOS/MovingPandas: n/a (MovingPandas has no map matcher)")
    print()
    print(
        f"answers on the baseline subset ({len(sub):,} points): stays CityOS {len(ours_sub_sp)} "
        f"(anchor radius {STAY_M:.0f} m) vs MovingPandas {len(ranges)} (diameter {2 * STAY_M:.0f} m); "
        f"segments CityOS {ours_sub_seg['traj_id'].nunique()} vs MovingPandas {len(split.trajectories)}"
    )
    gdf = g.to_pandas()
    same = len(gdf) == len(pg) and bool(
        (np.sort(gdf["n"].to_numpy()) == np.sort(pg.to_numpy())).all()
    )
    print(
        f"grid cells x hours: CityOS {len(g)} non-empty, pandas {len(pg)}, same counts: {same}; "
        f"points counted {int(gdf['n'].sum()):,} of {len(df):,} (CityOS also computes inflow, "
        "outflow and distinct objects, and validates the PointSeries)"
    )
    print(f"stay points found: {len(sp):,}; segments: {seg['traj_id'].nunique():,}")
    print(
        f"map-matching accuracy: {accuracy:.2%} of {len(got):,} points on the true road segment "
        f"(unmatched {(got.edge_id < 0).mean():.2%})"
    )


if __name__ == "__main__":
    main()
