"""A synthetic city: a perturbed street grid with ring and diagonal arterials, districts,
points of interest and bus lines, all generated deterministically from one seed."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely
from shapely.geometry import LineString, MultiPoint, box

from cityos.geo.distance import EARTH_RADIUS_M, haversine
from cityos.synth._errors import SynthError
from cityos.synth._graph import RoadGraph
from cityos.synth._water import make_water

__all__ = [
    "POI_CATEGORIES",
    "ROAD_CLASSES",
    "SPEED_LIMITS_KMH",
    "SyntheticCity",
    "make_city",
]

ROAD_CLASSES = ("arterial", "primary", "residential")
SPEED_LIMITS_KMH = {"arterial": 80.0, "primary": 60.0, "residential": 30.0}

# POIs per 400 km² (the default 20 km city); scaled by area, at least one of each.
_POI_DENSITY = {
    "school": 20,
    "hospital": 8,
    "factory": 12,
    "chemical_plant": 4,
    "gas_station": 15,
    "mall": 12,
    "residential": 60,
    "office": 30,
    "park": 10,
    "bus_depot": 4,
}
POI_CATEGORIES = tuple(_POI_DENSITY)
# Industry sits on the outskirts, as in most Chinese cities' master plans.
_OUTER = {"factory", "chemical_plant", "bus_depot"}

_DISTRICT_NAMES = (
    "Dongcheng",
    "Xicheng",
    "Chaoyang",
    "Haidian",
    "Fengtai",
    "Shijingshan",
    "Tongzhou",
    "Shunyi",
    "Changping",
    "Daxing",
    "Fangshan",
    "Mentougou",
    "Huairou",
    "Pinggu",
    "Miyun",
    "Yanqing",
)


@dataclass
class SyntheticCity:
    """A generated city; see :func:`make_city`.

    Attributes
    ----------
    nodes : pandas.DataFrame
        ``node_id`` (int64, equal to the row position), ``x`` (lon), ``y`` (lat),
        ``district_id``.
    edges : geopandas.GeoDataFrame
        One row per road (EPSG:4326): ``edge_id`` (row position), ``from_node``,
        ``to_node``, ``geometry`` (straight LineString from -> to), ``length_m``,
        ``road_class``, ``speed_limit_kmh``, ``oneway`` (travel only from -> to).
    districts, pois, bus_lines : geopandas.GeoDataFrame
        See :func:`make_city`.
    water : geopandas.GeoDataFrame
        The river, lakes and ponds (:func:`cityos.synth.make_water`), drawn from their own
        random stream: the rest of the city is the same with or without them.
    graph : RoadGraph
        Directed graph for shortest paths.
    center : tuple of float
        (lon, lat) of the city centre.
    tz : str
        IANA time zone used for daily schedules.
    """

    nodes: pd.DataFrame
    edges: gpd.GeoDataFrame
    districts: gpd.GeoDataFrame
    pois: gpd.GeoDataFrame
    bus_lines: gpd.GeoDataFrame
    graph: RoadGraph
    center: tuple[float, float]
    tz: str
    seed: int
    water: gpd.GeoDataFrame

    @property
    def node_x(self) -> npt.NDArray[np.float64]:
        """Longitude of every node, indexed by node id."""
        return np.asarray(self.nodes["x"].to_numpy(), dtype=np.float64)

    @property
    def node_y(self) -> npt.NDArray[np.float64]:
        """Latitude of every node, indexed by node id."""
        return np.asarray(self.nodes["y"].to_numpy(), dtype=np.float64)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(min lon, min lat, max lon, max lat) of the districts' extent."""
        b = self.districts.total_bounds
        return (float(b[0]), float(b[1]), float(b[2]), float(b[3]))

    def metres_per_degree(self) -> tuple[float, float]:
        """Metres per degree of longitude and of latitude at the city centre."""
        my = np.pi / 180.0 * EARTH_RADIUS_M
        return (float(my * np.cos(np.radians(self.center[1]))), float(my))


def _to_lonlat(
    mx: npt.NDArray[np.float64], my: npt.NDArray[np.float64], center: tuple[float, float]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    # Equirectangular around the centre: exact enough at city scale and linear, so
    # interpolating in lon/lat equals interpolating in metres.
    deg = 180.0 / np.pi / EARTH_RADIUS_M
    return center[0] + mx * deg / np.cos(np.radians(center[1])), center[1] + my * deg


def make_city(
    seed: int = 0,
    center: tuple[float, float] = (116.40, 39.91),
    size_km: float = 20.0,
    spacing_m: float = 400.0,
    *,
    n_districts: int = 12,
    n_bus_lines: int = 4,
    tz: str = "Asia/Shanghai",
) -> SyntheticCity:
    """Generate a synthetic city around ``center``.

    The road network is a square grid of ``size_km`` with nodes every ``spacing_m``,
    each node moved randomly by up to 20% of the spacing. Every fifth grid line is a
    primary road, the rest residential; some residential rows are one-way (alternating
    direction) and a few residential edges are removed. A ring road and two diagonals are
    arterials (diagonals cross grid edges without junctions, like overpasses). The
    directed network is always strongly connected.

    Parameters
    ----------
    seed : int
        Everything is a deterministic function of the arguments.
    center : (float, float)
        (lon, lat) in WGS84.
    size_km : float
        Side of the square extent.
    spacing_m : float
        Distance between grid lines.
    n_districts : int
        Number of district polygons (Voronoi cells clipped to the extent, 1..16).
    n_bus_lines : int
        Number of bus lines.
    tz : str
        Time zone of the city, used by the vehicle simulator's daily schedules.

    Returns
    -------
    SyntheticCity
        ``districts`` has ``district_id``, ``name`` (pinyin), ``geometry``; ``pois`` has
        ``poi_id``, ``name``, ``category`` (one of :data:`POI_CATEGORIES`),
        ``district_id``, ``node_id`` (nearest road node), ``geometry``; ``bus_lines`` has
        ``line_id``, ``name``, ``edge_ids`` (ordered edge ids of one full round, out and
        back), ``node_ids`` (nodes visited, first == last), ``stop_nodes``, ``geometry``;
        ``water`` has a river across the city and a few lakes and ponds
        (:func:`cityos.synth.make_water`).

    Examples
    --------
    >>> from cityos.synth import make_city
    >>> city = make_city(seed=1, size_km=4.0)
    >>> city.graph.is_strongly_connected()
    True
    >>> sorted(city.edges["road_class"].unique())
    ['arterial', 'primary', 'residential']
    """
    if size_km <= 0 or spacing_m <= 0 or spacing_m * 2 > size_km * 1000:
        raise SynthError(
            f"make_city needs size_km > 0 and at least two grid cells per side; got "
            f"size_km={size_km}, spacing_m={spacing_m} (lower spacing_m or raise size_km)"
        )
    if not 1 <= n_districts <= len(_DISTRICT_NAMES):
        raise SynthError(f"n_districts must be 1..{len(_DISTRICT_NAMES)}, got {n_districts}")
    rng = np.random.default_rng(seed)
    n = int(size_km * 1000 // spacing_m) + 1
    half = (n - 1) * spacing_m / 2
    # gi is the grid column (x), gj the row (y); node id = gi * n + gj.
    gi = np.repeat(np.arange(n), n)
    gj = np.tile(np.arange(n), n)
    mx = gi * spacing_m - half + rng.uniform(-0.2, 0.2, gi.size) * spacing_m
    my = gj * spacing_m - half + rng.uniform(-0.2, 0.2, gj.size) * spacing_m
    node_id = (gi * n + gj).astype(np.int64)

    # Roads keyed by unordered node pair, so ring/diagonal segments that coincide with grid
    # edges upgrade them instead of adding parallel edges.
    roads: dict[tuple[int, int], list[object]] = {}

    def add(a: int, b: int, cls: str, oneway: bool = False) -> None:
        k = (min(a, b), max(a, b))
        if k in roads:
            if cls == "arterial":
                roads[k][1] = "arterial"
                roads[k][2] = False
            return
        roads[k] = [(a, b), cls, oneway]

    def nid(i: int, j: int) -> int:
        return i * n + j

    def grid_class(line: int) -> str:
        return "primary" if line % 5 == 0 or line == n - 1 else "residential"

    for i in range(n):
        for j in range(n):
            if i + 1 < n:  # horizontal edge along row j
                cls = grid_class(j)
                oneway = cls == "residential" and j % 3 == 1
                a, b = nid(i, j), nid(i + 1, j)
                if oneway and (j // 3) % 2 == 1:
                    a, b = b, a  # alternate directions, like Manhattan's streets
                add(a, b, cls, oneway)
            if j + 1 < n:  # vertical edge along column i
                add(nid(i, j), nid(i, j + 1), grid_class(i))

    # Two diagonals corner to corner, and a ring at 60% of the half-size.
    for k in range(n - 1):
        add(nid(k, k), nid(k + 1, k + 1), "arterial")
        add(nid(k, n - 1 - k), nid(k + 1, n - 2 - k), "arterial")
    c = (n - 1) / 2
    r = 0.6 * c
    if r >= 1.5:
        ang = np.linspace(0.0, 2 * np.pi, int(16 * np.pi * r) + 8)
        ri = np.rint(c + r * np.cos(ang)).astype(int)
        rj = np.rint(c + r * np.sin(ang)).astype(int)
        ring = [nid(int(a), int(b)) for a, b in zip(ri, rj, strict=True)]
        ring = [v for k, v in enumerate(ring) if k == 0 or v != ring[k - 1]]
        for a, b in itertools.pairwise(ring):
            if a != b:
                add(a, b, "arterial")

    pairs = np.array([v[0] for v in roads.values()], dtype=np.int64)
    cls_arr = np.array([v[1] for v in roads.values()], dtype=object)
    oneway_arr = np.array([v[2] for v in roads.values()], dtype=bool)

    # Remove ~3% of residential two-way edges, keeping the network strongly connected.
    keep = np.ones(len(pairs), dtype=bool)
    cand = np.flatnonzero((cls_arr == "residential") & ~oneway_arr)
    drop = rng.choice(cand, size=len(cand) * 3 // 100, replace=False) if len(cand) else cand
    lon, lat = _to_lonlat(mx, my, center)

    def build(mask: npt.NDArray[np.bool_]) -> RoadGraph:
        p = pairs[mask]
        length = haversine(lon[p[:, 0]], lat[p[:, 0]], lon[p[:, 1]], lat[p[:, 1]])
        spd = np.array([SPEED_LIMITS_KMH[str(s)] for s in cls_arr[mask]])
        return RoadGraph(n * n, p[:, 0], p[:, 1], length, spd, oneway_arr[mask])

    for d in np.sort(drop):
        keep[d] = False
        if not build(keep).is_strongly_connected():
            keep[d] = True
    graph = build(keep)
    if not graph.is_strongly_connected():  # pragma: no cover - the grid guarantees it
        oneway_arr[:] = False
        graph = build(keep)

    pairs, cls_arr, oneway_arr = pairs[keep], cls_arr[keep], oneway_arr[keep]
    e_from, e_to = pairs[:, 0], pairs[:, 1]
    geoms = shapely.linestrings(
        np.stack([np.stack([lon[e_from], lat[e_from]], 1), np.stack([lon[e_to], lat[e_to]], 1)], 1)
    )
    road_class = pd.Categorical(cls_arr.astype(str), categories=list(ROAD_CLASSES))
    edges = gpd.GeoDataFrame(
        {
            "edge_id": np.arange(len(pairs), dtype=np.int64),
            "from_node": e_from,
            "to_node": e_to,
            "length_m": haversine(lon[e_from], lat[e_from], lon[e_to], lat[e_to]),
            "road_class": road_class,
            "speed_limit_kmh": np.array([SPEED_LIMITS_KMH[str(s)] for s in cls_arr]),
            "oneway": oneway_arr,
        },
        geometry=geoms,
        crs="EPSG:4326",
    )

    districts = _make_districts(rng, lon, lat, n_districts)
    node_district = _district_of(districts, lon, lat)
    nodes = pd.DataFrame(
        {"node_id": node_id, "x": lon, "y": lat, "district_id": node_district}
    ).sort_values("node_id", ignore_index=True)
    pois = _make_pois(rng, nodes, mx, my, half, size_km, districts)
    bus_lines = _make_bus_lines(graph, nodes, n, n_bus_lines)
    # last, and from a stream of its own: the water moves none of the draws above
    water = make_water(
        seed,
        half,
        lambda a, b: _to_lonlat(a, b, center),
        avoid=(shapely.get_x(pois.geometry.values), shapely.get_y(pois.geometry.values)),
    )
    return SyntheticCity(
        nodes=nodes,
        edges=edges,
        districts=districts,
        pois=pois,
        bus_lines=bus_lines,
        graph=graph,
        center=(float(center[0]), float(center[1])),
        tz=tz,
        seed=int(seed),
        water=water,
    )


def _make_districts(
    rng: np.random.Generator,
    lon: npt.NDArray[np.float64],
    lat: npt.NDArray[np.float64],
    k: int,
) -> gpd.GeoDataFrame:
    # Pad the extent slightly so that every node and POI falls inside a district.
    pad_x = (lon.max() - lon.min()) * 0.01
    pad_y = (lat.max() - lat.min()) * 0.01
    extent = box(lon.min() - pad_x, lat.min() - pad_y, lon.max() + pad_x, lat.max() + pad_y)
    x0, y0, x1, y1 = extent.bounds
    if k == 1:
        polys = [extent]
    else:
        sx = rng.uniform(x0, x1, k)
        sy = rng.uniform(y0, y1, k)
        cells = shapely.voronoi_polygons(MultiPoint(np.stack([sx, sy], 1)), extend_to=extent)
        # Voronoi cells come back in arbitrary order; match each to its seed.
        by_seed = {}
        for cell in shapely.get_parts(cells):
            clipped = shapely.intersection(cell, extent)
            for s in range(k):
                if s not in by_seed and shapely.contains_xy(cell, sx[s], sy[s]):
                    by_seed[s] = clipped
                    break
        polys = [by_seed[s] for s in range(k)]
    names = [_DISTRICT_NAMES[s] for s in range(k)]
    return gpd.GeoDataFrame(
        {"district_id": np.arange(k, dtype=np.int64), "name": names},
        geometry=polys,
        crs="EPSG:4326",
    )


def _district_of(
    districts: gpd.GeoDataFrame, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]
) -> npt.NDArray[np.int64]:
    out = np.full(len(x), -1, dtype=np.int64)
    for did, geom in zip(districts["district_id"], districts.geometry, strict=True):
        inside = shapely.intersects_xy(geom, x, y) & (out < 0)
        out[inside] = int(did)
    return out


def _make_pois(
    rng: np.random.Generator,
    nodes: pd.DataFrame,
    mx: npt.NDArray[np.float64],
    my: npt.NDArray[np.float64],
    half: float,
    size_km: float,
    districts: gpd.GeoDataFrame,
) -> gpd.GeoDataFrame:
    radius = np.maximum(np.abs(mx), np.abs(my)) / half
    outer = np.flatnonzero(radius > 0.55)
    inner = np.flatnonzero(radius <= 0.8)
    scale = size_km**2 / 400.0
    rows: list[tuple[str, str, int]] = []
    counters: dict[str, int] = {}
    for cat, dens in _POI_DENSITY.items():
        count = max(1, round(dens * scale))
        pool = outer if cat in _OUTER and len(outer) else inner
        for node in rng.choice(pool, size=count, replace=count > len(pool)):
            counters[cat] = counters.get(cat, 0) + 1
            rows.append((cat, f"{cat.replace('_', ' ').title()} No.{counters[cat]}", int(node)))
    node_arr = np.array([r[2] for r in rows], dtype=np.int64)
    # POIs sit beside the road, 20-60 m off their node.
    ang = rng.uniform(0, 2 * np.pi, len(rows))
    dist = rng.uniform(20, 60, len(rows))
    nx = nodes["x"].to_numpy()[node_arr]
    ny = nodes["y"].to_numpy()[node_arr]
    deg = 180.0 / np.pi / EARTH_RADIUS_M
    px = nx + np.cos(ang) * dist * deg / np.cos(np.radians(ny))
    py = ny + np.sin(ang) * dist * deg
    dist_id = _district_of(districts, px, py)
    dname = dict(zip(districts["district_id"], districts["name"], strict=True))
    names = [f"{dname.get(int(d), 'Outer')} {r[1]}" for d, r in zip(dist_id, rows, strict=True)]
    return gpd.GeoDataFrame(
        {
            "poi_id": np.arange(len(rows), dtype=np.int64),
            "name": names,
            "category": pd.Categorical([r[0] for r in rows], categories=list(POI_CATEGORIES)),
            "district_id": dist_id,
            "node_id": node_arr,
        },
        geometry=shapely.points(px, py),
        crs="EPSG:4326",
    )


def _make_bus_lines(
    graph: RoadGraph, nodes: pd.DataFrame, n: int, n_lines: int
) -> gpd.GeoDataFrame:
    lo, hi, mid = 1 if n > 3 else 0, n - 2 if n > 3 else n - 1, n // 2

    def nid(i: int, j: int) -> int:
        return i * n + j

    # Terminals: west-east, south-north, then the two diagonals, then shifted repeats.
    candidates = [
        (nid(lo, mid), nid(hi, mid)),
        (nid(mid, lo), nid(mid, hi)),
        (nid(lo, lo), nid(hi, hi)),
        (nid(lo, hi), nid(hi, lo)),
    ]
    step = max(1, n // 6)
    k = 1
    while len(candidates) < n_lines:
        off = (k * step) % n
        candidates.append((nid(lo, off), nid(hi, (mid + off) % n)))
        k += 1
    x = nodes["x"].to_numpy()
    y = nodes["y"].to_numpy()
    rows = []
    geoms = []
    for line_id, (a, b) in enumerate(candidates[:n_lines]):
        out = graph.shortest_path(a, b, "time")
        back = graph.shortest_path(b, a, "time")
        node_ids = np.concatenate([out.nodes, back.nodes[1:]])
        stops = sorted(
            {int(v) for v in out.nodes[::2]} | {int(v) for v in back.nodes[::2]} | {int(a), int(b)}
        )
        rows.append(
            {
                "line_id": np.int64(line_id),
                "name": f"Line {line_id + 1}",
                "edge_ids": [int(e) for e in np.concatenate([out.edges, back.edges])],
                "node_ids": [int(v) for v in node_ids],
                "stop_nodes": stops,
            }
        )
        geoms.append(LineString(np.stack([x[node_ids], y[node_ids]], 1)))
    if not rows:
        return gpd.GeoDataFrame(
            {"line_id": [], "name": [], "edge_ids": [], "node_ids": [], "stop_nodes": []},
            geometry=gpd.GeoSeries([], crs="EPSG:4326"),
            crs="EPSG:4326",
        )
    return gpd.GeoDataFrame(rows, geometry=geoms, crs="EPSG:4326")
