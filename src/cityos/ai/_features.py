"""The feature warehouse: declarative :class:`FeatureSpec` over store datasets, built into a
:class:`~cityos.ai.Panel` (station series, grid flows or network series) and cached under
the exact dataset versions it read; temporal (lags, rolling statistics, closeness / period /
trend views, calendar with the country's holidays), covariate and spatial (k nearest
stations, distance adjacency) features. Every feature at time t reads data at or before t
only (``tests/ai/test_features.py`` proves it)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from cityos.ai._errors import FeatureSpecError
from cityos.ai._panel import Panel
from cityos.errors import DatasetNotFound

__all__ = [
    "FeatureSpec",
    "TabularSpec",
    "build_panel",
    "calendar_features",
    "distance_adjacency",
    "knn_indices",
    "panel_from_frame",
    "road_adjacency",
    "tabular_features",
]

_COMPASS = {
    d: i * 22.5
    for i, d in enumerate(
        [
            "N",
            "NNE",
            "NE",
            "ENE",
            "E",
            "ESE",
            "SE",
            "SSE",
            "S",
            "SSW",
            "SW",
            "WSW",
            "W",
            "WNW",
            "NW",
            "NNW",
        ]  # 16 points
    )
}


@dataclass(frozen=True)
class TabularSpec:
    """Which tabular features (one row per place and time) to compute from a panel.

    ``lags`` are steps back from t (0 is t itself); ``rolling`` windows give mean and
    standard deviation over the last w steps; ``periods`` x ``period_len`` and
    ``trends`` x ``trend_len`` are ST-ResNet's period and trend views, relative to the
    first step ahead (t + 1 - p * period_len); ``closeness`` adds the last c steps (a lag
    block); ``k_nearest`` adds the mean target of the k nearest places at t (the most
    strongly connected road segments of a network).

    Weather and context: ``covariate_rolling`` windows give each covariate's trailing mean,
    ``covariate_changes`` its change over k steps (a pressure tendency); ``vectors`` are
    ``(sin, cos, speed)`` channel triples (a compass direction and its speed) turned into
    ``u = speed * sin`` and ``v = speed * cos`` at the covariate lags and trailing means
    (wind as a vector: which way the air moves and how fast); ``target_changes`` give the
    target's change over k steps; ``city_mean`` adds the mean over all places at t of the
    target and of each vector's u and v (the regional level and wind).

    Examples
    --------
    >>> TabularSpec(lags=(0, 1), rolling=(3,)).names(("pm25", "temp"), "pm25")[:4]
    ['pm25_lag0', 'pm25_lag1', 'pm25_mean3', 'pm25_std3']
    """

    lags: tuple[int, ...] = (0, 1, 2, 3, 5, 11, 23, 47, 167)
    rolling: tuple[int, ...] = (6, 24, 72)
    closeness: int = 0
    periods: int = 1
    period_len: int = 24
    trends: int = 1
    trend_len: int = 168
    calendar: bool = True
    covariate_lags: tuple[int, ...] = (0, 1)
    covariate_diff: bool = True
    k_nearest: int = 3
    node_feature: bool = True
    covariate_rolling: tuple[int, ...] = ()
    covariate_changes: tuple[int, ...] = ()
    vectors: tuple[tuple[str, str, str], ...] = ()
    target_changes: tuple[int, ...] = ()
    city_mean: bool = False

    def lookback(self) -> int:
        """Steps of history the features need (t and this many before it)."""
        need = [0, *self.lags, *self.covariate_lags, self.closeness - 1]
        need += [w - 1 for w in (*self.rolling, *self.covariate_rolling)]
        need += [*self.covariate_changes, *self.target_changes]
        need += [p * self.period_len - 1 for p in range(1, self.periods + 1)]
        need += [q * self.trend_len - 1 for q in range(1, self.trends + 1)]
        return max(need) + (1 if self.covariate_diff else 0)

    def names(self, channels: tuple[str, ...], target: str) -> list[str]:
        out = [f"{target}_lag{lag}" for lag in self.lags]
        for w in self.rolling:
            out += [f"{target}_mean{w}", f"{target}_std{w}"]
        out += [f"{target}_close{c}" for c in range(self.closeness)]
        out += [f"{target}_period{p}" for p in range(1, self.periods + 1)]
        out += [f"{target}_trend{q}" for q in range(1, self.trends + 1)]
        out += [f"{target}_change{k}" for k in self.target_changes]
        for ch in channels:
            if ch == target:
                continue
            out += [f"{ch}_lag{lag}" for lag in self.covariate_lags]
            if self.covariate_diff:
                out.append(f"{ch}_diff1")
            out += [f"{ch}_mean{w}" for w in self.covariate_rolling]
            out += [f"{ch}_change{k}" for k in self.covariate_changes]
        for sin, _cos, _speed in self.vectors:
            base = sin.removesuffix("_sin")
            for comp in ("u", "v"):
                out += [f"{base}_{comp}_lag{lag}" for lag in self.covariate_lags]
                out += [f"{base}_{comp}_mean{w}" for w in self.covariate_rolling]
        if self.city_mean:
            out.append(f"{target}_city")
            for sin, _cos, _speed in self.vectors:
                base = sin.removesuffix("_sin")
                out += [f"{base}_u_city", f"{base}_v_city"]
        if self.calendar:
            out += ["hour", "weekday", "month", "holiday"]
        if self.k_nearest:
            out.append(f"{target}_knn{self.k_nearest}")
        if self.node_feature:
            out += ["node", "x", "y"]
        return out


@dataclass(frozen=True)
class FeatureSpec:
    """A declarative feature set over one store dataset.

    Parameters
    ----------
    dataset:
        The store dataset: a point series (``kind="station"``), a network series
        (``kind="network"``), or moving points aggregated to grid flows (``kind="grid"``).
    target:
        Field to forecast (for grids: ``"inflow"`` or ``"outflow"``).
    covariates:
        Other fields joined by place and time (other pollutants, weather columns). A
        compass-direction string field becomes its sine and cosine.
    freq:
        Time step; readings are averaged into it.
    start, end:
        Optional window [start, end) of the data to read.
    cell_m, grid_bbox:
        Grid flows only: cell size in metres and the grid's extent (default: the data's).
    timezone, country:
        Local time zone for calendar features and the ISO country for holidays.
    network:
        Network series only: the road network dataset (NETWORK_STATIC: ``from_node``,
        ``to_node``, line geometry) the segment ids refer to; default the series schema's
        ``network``. Its graph gives the panel's road-network adjacency.
    tabular:
        The tabular features built from the panel (:class:`TabularSpec`).

    Examples
    --------
    >>> spec = FeatureSpec("beijing_air_quality", "pm25", covariates=("pm10", "temperature"))
    >>> spec.key({"beijing_air_quality": 3})[:8] == spec.key({"beijing_air_quality": 3})[:8]
    True
    >>> spec.key({"beijing_air_quality": 3}) != spec.key({"beijing_air_quality": 4})
    True
    """

    dataset: str
    target: str
    covariates: tuple[str, ...] = ()
    kind: Literal["station", "grid", "network"] = "station"
    freq: str = "1h"
    start: str | None = None
    end: str | None = None
    cell_m: float = 1000.0
    grid_bbox: tuple[float, float, float, float] | None = None
    timezone: str = "UTC"
    country: str | None = None
    network: str | None = None
    tabular: TabularSpec = field(default_factory=TabularSpec)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["covariates"] = list(self.covariates)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        d = dict(d)
        tab = d.pop("tabular", None) or {}
        tab = {k: tuple(v) if isinstance(v, list) else v for k, v in tab.items()}
        d["covariates"] = tuple(d.get("covariates") or ())
        if d.get("grid_bbox") is not None:
            d["grid_bbox"] = tuple(d["grid_bbox"])
        try:
            return cls(**d, tabular=TabularSpec(**tab))
        except TypeError as exc:
            raise FeatureSpecError(f"bad feature spec {d}: {exc}") from exc

    def key(self, versions: dict[str, int]) -> str:
        """Cache key: this spec and the exact versions of the datasets it reads."""
        blob = json.dumps(
            {"spec": self.to_dict(), "versions": versions}, sort_keys=True, default=str
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:32]


# -- building panels from the store ---------------------------------------------------------
def _home(store: Any) -> Path | None:
    inner = getattr(store, "store", store)  # a SecureStore wraps the Store
    settings = getattr(inner, "settings", None)
    home = getattr(settings, "home", None)
    return Path(home) if home is not None else None


def _check(store: Any, spec: FeatureSpec) -> tuple[Any, dict[str, int]]:
    if spec.kind not in ("station", "grid", "network"):
        raise FeatureSpecError(
            f"feature spec kind {spec.kind!r} is not one of 'station', 'grid', 'network'"
        )
    try:
        info = store.describe(spec.dataset)
    except DatasetNotFound as exc:
        raise FeatureSpecError(
            f"feature spec reads unknown dataset {spec.dataset!r}: {exc}"
        ) from exc
    fields = {f.name: f.type for f in info.schema.fields}
    if spec.kind == "grid":
        if spec.target not in ("inflow", "outflow"):
            raise FeatureSpecError(
                f"grid-flow spec target must be 'inflow' or 'outflow', not {spec.target!r}"
            )
        if spec.covariates:
            raise FeatureSpecError("grid-flow specs take no covariates (the channels are flows)")
    else:
        for f in (spec.target, *spec.covariates):
            if f not in fields:
                raise FeatureSpecError(
                    f"feature spec names unknown field {f!r} of dataset {spec.dataset!r}; "
                    f"its fields are {sorted(fields)}"
                )
        if not fields[spec.target].startswith(("float", "int")):
            raise FeatureSpecError(
                f"target {spec.target!r} of {spec.dataset!r} is {fields[spec.target]}, not numeric"
            )
    try:
        pd.Timedelta(spec.freq)
    except ValueError as exc:
        raise FeatureSpecError(f"feature spec freq {spec.freq!r} is not a duration") from exc
    return info, {spec.dataset: int(info.version)}


def build_panel(store: Any, spec: FeatureSpec, *, cache: bool = True) -> Panel:
    """Build the panel ``spec`` describes from ``store`` (a Store or a SecureStore, so the
    reads are authorised and audited), reusing the cached one built from the same dataset
    versions.

    Raises
    ------
    FeatureSpecError
        Unknown dataset or field, a non-numeric target, a bad frequency.

    Examples
    --------
    >>> # panel = build_panel(store, FeatureSpec("beijing_air_quality", "pm25"))
    """
    info, versions = _check(store, spec)
    home = _home(store)
    path = None
    if cache and home is not None:
        path = home / "ai" / "features" / f"{spec.key(versions)}.npz"
        if path.is_file():
            return _load_panel(path)
    if spec.kind == "grid":
        panel = _grid_panel(store, spec, versions)
    elif spec.kind == "network":
        panel = _network_panel(store, spec, info, versions)
    else:
        cols = ["id", "t", "x", "y", spec.target, *spec.covariates]
        df = store.scan(spec.dataset, columns=cols, start=spec.start, end=spec.end).to_pandas()
        panel = panel_from_frame(
            df,
            spec.target,
            spec.covariates,
            spec.freq,
            timezone=spec.timezone,
            country=spec.country,
            datasets=versions,
        )
    if path is not None:
        _save_panel(panel, path)
    return panel


def panel_from_frame(
    df: pd.DataFrame,
    target: str,
    covariates: tuple[str, ...] = (),
    freq: str = "1h",
    *,
    timezone: str = "UTC",
    country: str | None = None,
    datasets: dict[str, int] | None = None,
    start: Any = None,
    end: Any = None,
) -> Panel:
    """A panel from long rows ``id, t, x, y, target, covariates...`` (averaged per step).

    Examples
    --------
    >>> df = pd.DataFrame({"id": ["a", "b", "a"], "t": pd.to_datetime(
    ...     ["2026-03-02T00:10Z", "2026-03-02T00:20Z", "2026-03-02T02:00Z"]),
    ...     "x": 0.0, "y": 0.0, "v": [1.0, 2.0, 3.0]})
    >>> p = panel_from_frame(df, "v")
    >>> p.shape, p.series[:, 0].tolist()
    ((3, 2, 1), [1.0, nan, 3.0])
    """
    step = pd.Timedelta(freq)
    if not len(df):
        raise FeatureSpecError("no rows to build a panel from (is the time window empty?)")
    frame = pd.DataFrame({"id": df["id"].astype(str)})
    frame["t"] = pd.to_datetime(df["t"], utc=True).dt.floor(step)
    channels: list[str] = []
    for c in (target, *covariates):
        col = df[c]
        if col.dtype == object or pd.api.types.is_string_dtype(col):
            deg = col.map(_COMPASS).astype("float64")
            if col.notna().any() and deg.isna().all():
                raise FeatureSpecError(
                    f"covariate {c!r} is a string field that is not a compass direction"
                )
            frame[f"{c}_sin"] = np.sin(np.deg2rad(deg))
            frame[f"{c}_cos"] = np.cos(np.deg2rad(deg))
            channels += [f"{c}_sin", f"{c}_cos"]
        else:
            frame[c] = col.astype("float64")
            channels.append(c)
    g = frame.groupby(["t", "id"], sort=True)[channels].mean()
    nodes = np.array(sorted(frame["id"].unique()))
    lo = pd.Timestamp(start, tz="UTC") if start is not None else frame["t"].min()
    hi = pd.Timestamp(end, tz="UTC") - step if end is not None else frame["t"].max()
    times = pd.date_range(lo, hi, freq=step)
    full = g.reindex(pd.MultiIndex.from_product([times, nodes], names=["t", "id"]))
    values = full.to_numpy("float64").reshape(len(times), len(nodes), len(channels))
    pos = df.assign(id=df["id"].astype(str)).groupby("id")[["x", "y"]].first().reindex(nodes)
    return Panel(
        values,
        times,
        nodes,
        tuple(channels),
        target,
        step,
        pos["x"].to_numpy("float64"),
        pos["y"].to_numpy("float64"),
        None,
        dict(datasets or {}),
        timezone,
        country,
    )


def _grid_panel(store: Any, spec: FeatureSpec, versions: dict[str, int]) -> Panel:
    from cityos.analytics import CellGrid, flow_tensor, grid_flows

    df = store.scan(spec.dataset, columns=["id", "t", "x", "y"], start=spec.start, end=spec.end)
    pts = df.to_pandas()
    if not len(pts):
        raise FeatureSpecError(f"no points in {spec.dataset!r} for the grid-flow spec window")
    bbox = spec.grid_bbox or (
        float(pts["x"].min()),
        float(pts["y"].min()),
        float(pts["x"].max()) + 1e-9,
        float(pts["y"].max()) + 1e-9,
    )
    grid = CellGrid.from_metres(bbox, spec.cell_m, True)
    flows = grid_flows(pts, grid, spec.freq)
    tensor, times = flow_tensor(flows, grid)
    t, _, ny, nx = tensor.shape
    values = tensor.reshape(t, 2, ny * nx).transpose(0, 2, 1).copy()
    cx, cy = grid.centres()
    channels = ("inflow", "outflow")
    return Panel(
        values,
        pd.DatetimeIndex(times),
        np.arange(ny * nx),
        channels,
        spec.target,
        pd.Timedelta(spec.freq),
        np.asarray(cx, dtype="float64"),
        np.asarray(cy, dtype="float64"),
        (ny, nx),
        versions,
        spec.timezone,
        spec.country,
    )


def _network_panel(store: Any, spec: FeatureSpec, info: Any, versions: dict[str, int]) -> Panel:
    """Readings per road segment (a NETWORK_SERIES dataset, id = segment id) as a panel whose
    nodes are the segments, placed at their midpoints, with the road-network adjacency of
    :func:`road_adjacency` over the network dataset's graph."""
    import shapely

    net = spec.network or getattr(info.schema, "network", None)
    if not net:
        raise FeatureSpecError(
            f"network-series spec over {spec.dataset!r} names no road network: set "
            "FeatureSpec(network=...) or the series schema's network"
        )
    try:
        ninfo = store.describe(net)
    except DatasetNotFound as exc:
        raise FeatureSpecError(f"feature spec reads unknown road network {net!r}") from exc
    nfields = {f.name for f in ninfo.schema.fields}
    cols = ["id", "t", spec.target, *spec.covariates]
    df = store.scan(spec.dataset, columns=cols, start=spec.start, end=spec.end).to_pandas()
    roads = store.scan(
        net,
        columns=["id", "from_node", "to_node", "geometry"]
        + (["length_m"] * ("length_m" in nfields)),
    ).to_pandas()
    seg = {str(v): i for i, v in enumerate(roads["id"].astype(str))}
    unknown = sorted(set(df["id"].astype(str)) - set(seg))
    if unknown:
        raise FeatureSpecError(
            f"{spec.dataset!r} has readings of segment(s) {unknown[:5]} that road network "
            f"{net!r} does not have"
        )
    geoms = roads["geometry"].to_numpy()
    lines = shapely.from_wkb(geoms) if len(geoms) and isinstance(geoms[0], bytes) else geoms
    mid = shapely.line_interpolate_point(lines, 0.5, normalized=True)
    roads = roads.assign(x=shapely.get_x(mid), y=shapely.get_y(mid))
    if "length_m" not in roads:
        from cityos.geo import haversine

        c = shapely.get_coordinates(shapely.boundary(lines))
        a, b = c[0::2], c[1::2]
        roads["length_m"] = haversine(a[:, 0], a[:, 1], b[:, 0], b[:, 1])
    df = df.assign(id=df["id"].astype(str))
    pos = roads.assign(id=roads["id"].astype(str)).set_index("id")
    df["x"] = pos["x"].reindex(df["id"]).to_numpy()
    df["y"] = pos["y"].reindex(df["id"]).to_numpy()
    versions = {**versions, net: int(ninfo.version)}
    panel = panel_from_frame(
        df,
        spec.target,
        spec.covariates,
        spec.freq,
        timezone=spec.timezone,
        country=spec.country,
        datasets=versions,
    )
    rows = np.array([seg[str(n)] for n in panel.nodes], dtype=np.int64)
    adj = road_adjacency(
        roads["from_node"].to_numpy(np.int64),
        roads["to_node"].to_numpy(np.int64),
        roads["length_m"].to_numpy("float64"),
        rows,
    )
    return replace(panel, adjacency=adj)


def road_adjacency(
    edge_from: np.ndarray,
    edge_to: np.ndarray,
    edge_length_m: np.ndarray,
    segments: np.ndarray | None = None,
    *,
    sigma: float | None = None,
    threshold: float = 0.1,
) -> np.ndarray:
    """Road-network adjacency between road segments (DCRNN's, over network distance):
    ``exp(-(d/sigma)^2)`` where d is the shortest distance along the roads from the middle
    of one segment to the middle of the other (half of each segment's length plus the
    shortest path between their nearest ends; 0 for a segment to itself), zero below
    ``threshold`` and where the roads do not connect. ``segments`` picks rows of the edge
    arrays (default: all); ``sigma`` defaults to the standard deviation of the finite
    distances.

    Examples
    --------
    >>> # a street 0-1-2-3 of three segments (100 m, 200 m, 100 m)
    >>> a = road_adjacency(np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([100.0, 200, 100]),
    ...                    sigma=300.0)
    >>> d = road_distances(np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([100.0, 200, 100]))
    >>> d[0].tolist(), bool(a[0, 1] > a[0, 2])
    ([0.0, 150.0, 300.0], True)
    """
    d = road_distances(edge_from, edge_to, edge_length_m, segments)
    fin = d[np.isfinite(d) & (d > 0)]
    s = float(sigma or (fin.std() if len(fin) > 1 else 0.0) or (fin.mean() if len(fin) else 1.0))
    with np.errstate(over="ignore", invalid="ignore"):
        a = np.where(np.isfinite(d), np.exp(-((d / s) ** 2)), 0.0)
    a[a < threshold] = 0.0
    return np.asarray(a)


def road_distances(
    edge_from: np.ndarray,
    edge_to: np.ndarray,
    edge_length_m: np.ndarray,
    segments: np.ndarray | None = None,
) -> np.ndarray:
    """``(S, S)`` metres along the roads between the middles of road segments (inf where
    they do not connect); see :func:`road_adjacency`."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    ef = np.asarray(edge_from, dtype=np.int64)
    et = np.asarray(edge_to, dtype=np.int64)
    ln = np.asarray(edge_length_m, dtype="float64")
    sel = np.arange(len(ef)) if segments is None else np.asarray(segments, dtype=np.int64)
    nodes, inv = np.unique(np.concatenate([ef, et]), return_inverse=True)
    u, v = inv[: len(ef)], inv[len(ef) :]
    k = len(nodes)
    # undirected road graph, the shortest of parallel roads: traffic on a segment relates to
    # its neighbours upstream and downstream alike
    a, b = np.minimum(u, v), np.maximum(u, v)
    short = pd.DataFrame({"a": a, "b": b, "w": ln}).groupby(["a", "b"])["w"].min().reset_index()
    g = coo_matrix((short["w"], (short["a"], short["b"])), shape=(k, k)).tocsr()
    ends = np.unique(np.concatenate([u[sel], v[sel]]))
    dist = dijkstra(g, directed=False, indices=ends)  # (E, k)
    row = {int(n): i for i, n in enumerate(ends)}
    su, sv = u[sel], v[sel]
    du, dv = dist[[row[int(n)] for n in su]], dist[[row[int(n)] for n in sv]]  # (S, k)
    best = np.minimum.reduce([du[:, su], du[:, sv], dv[:, su], dv[:, sv]])  # (S, S)
    half = ln[sel] / 2.0
    d = best + half[:, None] + half[None, :]
    np.fill_diagonal(d, 0.0)
    return np.asarray(d)


def _save_panel(panel: Panel, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        values=panel.values,
        times=panel.times.as_unit("ns").asi8,
        meta=np.array(json.dumps(panel.meta())),
    )
    tmp.replace(path)  # atomic: readers see the whole file or none


def _load_panel(path: Path) -> Panel:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        values = z["values"]
        times = pd.DatetimeIndex(pd.to_datetime(z["times"], unit="ns", utc=True))
    return panel_from_meta(values, times, meta)


def panel_from_meta(values: np.ndarray, times: pd.DatetimeIndex, meta: dict[str, Any]) -> Panel:
    """Rebuild a panel from its :meth:`Panel.meta` and values."""
    nodes = np.asarray(meta["nodes"])
    adj = None
    if meta.get("adjacency"):
        r, c, w = meta["adjacency"]
        adj = np.zeros((len(nodes), len(nodes)))
        adj[np.asarray(r, dtype=np.int64), np.asarray(c, dtype=np.int64)] = w
    return Panel(
        np.asarray(values, dtype="float64"),
        times,
        nodes,
        tuple(meta["channels"]),
        meta["target"],
        pd.Timedelta(seconds=meta["freq_s"]),
        np.array([np.nan if v is None else v for v in meta["x"]], dtype="float64"),
        np.array([np.nan if v is None else v for v in meta["y"]], dtype="float64"),
        tuple(meta["grid"]) if meta.get("grid") else None,
        dict(meta.get("datasets") or {}),
        meta.get("timezone") or "UTC",
        meta.get("country"),
        adj,
    )


# -- features --------------------------------------------------------------------------------
def calendar_features(
    times: pd.DatetimeIndex, timezone: str = "UTC", country: str | None = None
) -> np.ndarray:
    """``(T, 4)``: local hour, weekday, month and a holiday flag (the ``holidays``
    package's public holidays of ``country``).

    Examples
    --------
    >>> t = pd.date_range("2016-10-01T00:00Z", periods=2, freq="1D")
    >>> calendar_features(t, "Asia/Shanghai", "CN")[:, 3].tolist()
    [1.0, 1.0]
    """
    local = times.tz_convert(timezone)
    hol = np.zeros(len(times))
    if country:
        import holidays

        years = sorted(set(local.year.tolist()))
        try:
            days = holidays.country_holidays(country, years=years)
        except NotImplementedError as exc:
            raise FeatureSpecError(f"the holidays package knows no country {country!r}") from exc
        hol = np.array([d in days for d in local.date], dtype="float64")
    return np.column_stack(
        [local.hour.to_numpy(), local.day_of_week.to_numpy(), local.month.to_numpy(), hol]
    ).astype("float64")


def knn_indices(x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """``(N, k)``: each place's k nearest other places (haversine on lon/lat; by index
    when positions are unknown).

    Examples
    --------
    >>> knn_indices(np.array([0.0, 0.01, 1.0]), np.zeros(3), 1).ravel().tolist()
    [1, 0, 1]
    """
    n = len(x)
    k = min(k, n - 1)
    if k <= 0:
        return np.zeros((n, 0), dtype=np.int64)
    d = _distances(x, y)
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def adjacency_neighbours(adj: np.ndarray, k: int) -> np.ndarray:
    """``(N, k)``: each node's k most strongly connected other nodes of a network adjacency
    (the road-network neighbours of a segment).

    Examples
    --------
    >>> adjacency_neighbours(np.array([[1, .9, .2], [.9, 1, .5], [.2, .5, 1]]), 1).ravel().tolist()
    [1, 0, 1]
    """
    n = adj.shape[0]
    k = min(k, n - 1)
    if k <= 0:
        return np.zeros((n, 0), dtype=np.int64)
    w = np.array(adj, dtype="float64")
    np.fill_diagonal(w, -np.inf)
    return np.argsort(-w, axis=1, kind="stable")[:, :k]


def _distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from cityos.geo import haversine

    n = len(x)
    if np.isnan(x).any() or np.isnan(y).any():
        idx = np.arange(n, dtype="float64")
        out: np.ndarray = np.abs(idx[:, None] - idx[None, :])
        return out
    xi, xj = np.meshgrid(x, x, indexing="ij")
    yi, yj = np.meshgrid(y, y, indexing="ij")
    return np.asarray(haversine(xi.ravel(), yi.ravel(), xj.ravel(), yj.ravel())).reshape(n, n)


def distance_adjacency(
    x: np.ndarray, y: np.ndarray, *, sigma: float | None = None, threshold: float = 0.1
) -> np.ndarray:
    """Gaussian-kernel adjacency ``exp(-(d/sigma)^2)`` (DCRNN's), zero below ``threshold``;
    ``sigma`` defaults to the standard deviation of the distances.

    Examples
    --------
    >>> a = distance_adjacency(np.array([0.0, 0.01, 1.0]), np.zeros(3))
    >>> a.shape, bool(a[0, 1] > a[0, 2])
    ((3, 3), True)
    """
    d = _distances(x, y)
    s = float(sigma or d[np.triu_indices(len(x), 1)].std() or 1.0)
    a = np.exp(-((d / s) ** 2))
    a[a < threshold] = 0.0
    return a


def _rolling(v: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """NaN-aware trailing mean and std over w steps ending at each t (inclusive)."""
    ok = ~np.isnan(v)
    z = np.where(ok, v, 0.0)
    pad = np.zeros((1, *v.shape[1:]))
    c1 = np.concatenate([pad, np.cumsum(z, axis=0)])
    c2 = np.concatenate([pad, np.cumsum(z * z, axis=0)])
    cn = np.concatenate([pad, np.cumsum(ok, axis=0)])
    t = v.shape[0]
    hi = np.arange(1, t + 1)
    lo = np.maximum(hi - w, 0)
    n = cn[hi] - cn[lo]
    s1, s2 = c1[hi] - c1[lo], c2[hi] - c2[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, s1 / np.maximum(n, 1), np.nan)
        var = np.where(n > 1, s2 / np.maximum(n, 1) - mean**2, np.nan)
    return mean, np.sqrt(np.maximum(var, 0.0))


def _shift(v: np.ndarray, lag: int, origins: np.ndarray) -> np.ndarray:
    idx = origins - lag
    out = np.full((len(origins), *v.shape[1:]), np.nan)
    ok = (idx >= 0) & (idx < v.shape[0])
    out[ok] = v[idx[ok]]
    return out


def tabular_features(
    panel: Panel, origins: np.ndarray, spec: TabularSpec | None = None
) -> tuple[np.ndarray, list[str]]:
    """Features of every place at each origin step: ``(len(origins) * N, F)`` float32,
    origin-major, and their names. Row ``(o, n)`` reads only steps ``<= o``.

    Examples
    --------
    >>> p = Panel.from_array(np.arange(10.0).reshape(10, 1), "2026-03-02", "1h")
    >>> X, names = tabular_features(p, np.array([9]), TabularSpec(lags=(0, 2), rolling=(),
    ...     periods=0, trends=0, calendar=False, k_nearest=0, node_feature=False))
    >>> dict(zip(names, X[0].tolist()))
    {'value_lag0': 9.0, 'value_lag2': 7.0}
    """
    spec = spec or TabularSpec()
    origins = np.asarray(origins, dtype=np.int64)
    v = panel.values
    tgt = panel.series
    cols: list[np.ndarray] = []
    for lag in spec.lags:
        cols.append(_shift(tgt, lag, origins))
    if spec.rolling:
        for w in spec.rolling:
            m, s = _rolling(tgt, w)
            cols += [_shift(m, 0, origins), _shift(s, 0, origins)]
    for c in range(spec.closeness):
        cols.append(_shift(tgt, c, origins))
    for p in range(1, spec.periods + 1):
        cols.append(_shift(tgt, p * spec.period_len - 1, origins))
    for q in range(1, spec.trends + 1):
        cols.append(_shift(tgt, q * spec.trend_len - 1, origins))
    for k in spec.target_changes:
        cols.append(_shift(tgt, 0, origins) - _shift(tgt, k, origins))
    for ci, ch in enumerate(panel.channels):
        if ch == panel.target:
            continue
        cv = v[:, :, ci]
        for lag in spec.covariate_lags:
            cols.append(_shift(cv, lag, origins))
        if spec.covariate_diff:
            cols.append(_shift(cv, 0, origins) - _shift(cv, 1, origins))
        for w in spec.covariate_rolling:
            cols.append(_shift(_rolling(cv, w)[0], 0, origins))
        for k in spec.covariate_changes:
            cols.append(_shift(cv, 0, origins) - _shift(cv, k, origins))
    uv: list[np.ndarray] = []
    for sin, cos, speed in spec.vectors:
        for name in (sin, cos, speed):
            if name not in panel.channels:
                raise FeatureSpecError(
                    f"vector feature needs channel {name!r}; the panel has {list(panel.channels)}"
                )
        ws = v[:, :, panel.channels.index(speed)]
        for comp in (sin, cos):
            c = ws * v[:, :, panel.channels.index(comp)]
            uv.append(c)
            for lag in spec.covariate_lags:
                cols.append(_shift(c, lag, origins))
            for w in spec.covariate_rolling:
                cols.append(_shift(_rolling(c, w)[0], 0, origins))
    if spec.city_mean:
        with np.errstate(invalid="ignore"), _quiet():
            for series in (tgt, *uv):
                cm = np.nanmean(_shift(series, 0, origins), axis=1, keepdims=True)
                cols.append(np.repeat(cm, series.shape[1], axis=1))
    n = panel.shape[1]
    if spec.calendar:
        ok = np.clip(origins, 0, len(panel.times) - 1)
        cal = calendar_features(panel.times[ok], panel.timezone, panel.country)
        for j in range(cal.shape[1]):
            cols.append(np.repeat(cal[:, j][:, None], n, axis=1))
    if spec.k_nearest:
        nb = (
            adjacency_neighbours(panel.adjacency, spec.k_nearest)
            if panel.adjacency is not None
            else knn_indices(panel.x, panel.y, spec.k_nearest)
        )
        cur = _shift(tgt, 0, origins)
        if nb.shape[1]:
            with np.errstate(invalid="ignore"), _quiet():
                cols.append(np.nanmean(cur[:, nb], axis=2))
        else:
            cols.append(np.full_like(cur, np.nan))
    if spec.node_feature:
        o = len(origins)
        cols += [
            np.tile(np.arange(n, dtype="float64"), (o, 1)),
            np.tile(panel.x, (o, 1)),
            np.tile(panel.y, (o, 1)),
        ]
    X = np.stack(cols, axis=-1).reshape(len(origins) * n, len(cols)).astype("float32")
    return X, spec.names(panel.channels, panel.target)


class _quiet:
    """Silence numpy's 'mean of empty slice' warning (an all-NaN neighbourhood is NaN)."""

    def __enter__(self) -> None:
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: Any) -> None:
        self._w.__exit__(*exc)
