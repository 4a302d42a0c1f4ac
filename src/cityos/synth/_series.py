"""Spatial time series from a synthetic city: fixed loop detectors with hourly readings, and
the network time series of mean speed per road edge and time bin from simulated vehicles."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cityos.synth._city import SyntheticCity
from cityos.synth._errors import SynthError

__all__ = ["make_road_speeds", "make_sensor_readings"]

# Vehicles per hour past a detector at the daily peak, by road class.
_PEAK_FLOW = {"arterial": 3600.0, "primary": 1500.0, "residential": 300.0}


def _daily_profile(hour: np.ndarray, weekend: np.ndarray) -> np.ndarray:
    # Low at night, two commuter peaks on weekdays, one broad midday hump at weekends.
    am = np.exp(-0.5 * ((hour - 8.0) / 1.2) ** 2)
    pm = np.exp(-0.5 * ((hour - 18.0) / 1.5) ** 2)
    mid = np.exp(-0.5 * ((hour - 13.0) / 3.5) ** 2)
    weekday = 0.08 + 0.9 * np.maximum(am, pm) + 0.45 * mid
    weekend_p = 0.08 + 0.7 * mid
    return np.where(weekend, weekend_p, weekday)


def make_sensor_readings(
    city: SyntheticCity,
    n_sensors: int,
    start: str | pd.Timestamp = "2026-03-02",
    days: int = 7,
    interval: str = "1h",
    seed: int = 0,
) -> pd.DataFrame:
    """Readings of ``n_sensors`` traffic loop detectors placed at road edges' midpoints.

    ``value`` is the traffic flow in vehicles per hour: the road class's peak flow times a
    daily profile in local time (weekday commuter peaks, a midday hump at weekends) times
    log-normal noise (sigma 0.1). Each sensor reads at every ``interval`` from local
    midnight of ``start`` for ``days`` days.

    Parameters
    ----------
    city : SyntheticCity
        From :func:`make_city`.
    n_sensors : int
        Number of detectors, on distinct edges (at most the number of edges).
    start : str or Timestamp
        First local date.
    days : int
        Number of days.
    interval : str
        Reading interval as a pandas frequency ("15min", "1h").
    seed : int
        Same arguments and seed give the same frame.

    Returns
    -------
    pandas.DataFrame
        ``id`` ("sensor-0003"), ``t`` (datetime64[ms, UTC]), ``x``, ``y`` (lon/lat),
        ``value`` (float64), ``edge_id``; sorted by ``t`` then ``id``.

    Examples
    --------
    >>> from cityos.synth import make_city, make_sensor_readings
    >>> city = make_city(size_km=3.0)
    >>> df = make_sensor_readings(city, 3, days=1)
    >>> len(df), list(df.columns)
    (72, ['id', 't', 'x', 'y', 'value', 'edge_id'])
    """
    edges = city.edges
    if not 0 <= n_sensors <= len(edges) or days < 0:
        raise SynthError(
            f"need 0 <= n_sensors <= {len(edges)} (edges in the city) and days >= 0; "
            f"got n_sensors={n_sensors}, days={days}"
        )
    rng = np.random.default_rng([seed, 3])
    chosen = np.sort(rng.choice(len(edges), size=n_sensors, replace=False))
    # Edges are straight, so the midpoint of the end nodes lies on the road.
    a = edges["from_node"].to_numpy()[chosen]
    b = edges["to_node"].to_numpy()[chosen]
    sx = (city.node_x[a] + city.node_x[b]) / 2.0
    sy = (city.node_y[a] + city.node_y[b]) / 2.0
    s = pd.Timestamp(start).tz_localize(None).normalize().tz_localize(city.tz)
    times = pd.date_range(s, s + pd.Timedelta(days=days), freq=interval, inclusive="left")
    local = times.tz_convert(city.tz)
    prof = _daily_profile(
        np.asarray(local.hour + local.minute / 60.0, dtype=np.float64),
        np.asarray(local.day_of_week >= 5),
    )
    peak = np.array([_PEAK_FLOW[str(c)] for c in edges["road_class"].to_numpy()[chosen]])
    value = peak[None, :] * prof[:, None] * rng.lognormal(0.0, 0.1, (len(times), n_sensors))
    nt = len(times)
    ids = np.array([f"sensor-{k:04d}" for k in range(n_sensors)], dtype=object)
    t_utc = times.tz_convert("UTC").as_unit("ms")
    return pd.DataFrame(
        {
            "id": pd.array(np.tile(ids, nt), dtype="str"),
            "t": np.repeat(t_utc, n_sensors),
            "x": np.tile(sx, nt),
            "y": np.tile(sy, nt),
            "value": value.ravel(),
            "edge_id": np.tile(edges["edge_id"].to_numpy()[chosen], nt),
        }
    )


def make_road_speeds(
    city: SyntheticCity, vehicles: pd.DataFrame, bin: str = "15min"
) -> pd.DataFrame:
    """Mean speed per road edge and time bin from the ground truth of simulated vehicles.

    Only moving fixes count (``speed_kmh > 0``), so parked, waiting and dwelling vehicles do
    not drag the mean down.

    Parameters
    ----------
    city : SyntheticCity
        The city ``vehicles`` ran on (its edges give ``road_class``).
    vehicles : pandas.DataFrame
        From :func:`simulate_vehicles` or :func:`iter_vehicle_points`.
    bin : str
        Time bin as a pandas frequency.

    Returns
    -------
    pandas.DataFrame
        ``edge_id``, ``t`` (bin start, UTC), ``speed_kmh`` (mean), ``n_points``,
        ``road_class``; sorted by ``t`` then ``edge_id``.

    Examples
    --------
    >>> from cityos.synth import make_city, make_road_speeds, simulate_vehicles
    >>> city = make_city(size_km=3.0)
    >>> speeds = make_road_speeds(city, simulate_vehicles(city, 5, days=1))
    >>> bool((speeds["speed_kmh"] > 0).all())
    True
    """
    missing = {"t", "true_edge", "speed_kmh"} - set(vehicles.columns)
    if missing:
        raise SynthError(
            f"vehicles frame lacks column(s) {sorted(missing)}; pass the output of "
            "simulate_vehicles"
        )
    moving = vehicles.loc[vehicles["speed_kmh"] > 0, ["t", "true_edge", "speed_kmh"]]
    grouped = moving.groupby([moving["t"].dt.floor(bin), "true_edge"], sort=True, observed=True)
    out = grouped["speed_kmh"].agg(["mean", "size"]).reset_index()
    out.columns = pd.Index(["t", "edge_id", "speed_kmh", "n_points"])
    out["road_class"] = city.edges["road_class"].to_numpy()[out["edge_id"].to_numpy()]
    return out[["edge_id", "t", "speed_kmh", "n_points", "road_class"]]
