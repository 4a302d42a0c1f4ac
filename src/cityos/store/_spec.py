"""Typed query specifications: what a query asks for, independent of who runs it.

Every query the store answers is one of these frozen dataclasses, passed to
:meth:`cityos.store.Store.query`. Each spec names the datasets it touches
(:meth:`QuerySpec.datasets`) and the columns it computes over (:meth:`QuerySpec.reads`),
so a security layer can authorise, filter and mask every one of them without knowing
the query types. The convenience methods (``Store.st_range`` and friends) are built from
the functions in :data:`QUERIES`, the one place that maps their parameters to a spec.

Examples
--------
>>> spec = st_range("cars", (116.3, 39.9, 116.4, 40.0), "2026-03-02", "2026-03-03")
>>> spec.kind, spec.datasets()
('st_range', ('cars',))
>>> normalise_aggs({"n": "count", "speed": "mean"})
{'n': Agg(column=None, fn='count'), 'speed': Agg(column='speed', fn='mean')}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np

from cityos.errors import QueryError
from cityos.model import GEOM_COL, ID_COL, TIME_COL, TIME_END_COL, X_COL, Y_COL

__all__ = [
    "AGG_FUNCTIONS",
    "KNN",
    "QUERIES",
    "RESERVED_OUTPUT_NAMES",
    "Agg",
    "Aggregate",
    "Grid",
    "IDTemporal",
    "JoinNearest",
    "JoinRegions",
    "KNNTrajectories",
    "QuerySpec",
    "Range",
    "STRange",
    "Scan",
    "Similar",
    "normalise_aggs",
]

#: The most coordinates a query trajectory may have: similarity costs
#: len(query) x points in the window, so this bounds the work per candidate.
MAX_QUERY_TRAJECTORY = 2_000
#: The most neighbours / objects a kNN or similarity query may ask for.
MAX_K = 100_000

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
AGG_FUNCTIONS = ("count", "sum", "mean", "min", "max")
#: Columns the aggregation output always has; an aggregate may not take their name.
RESERVED_OUTPUT_NAMES = frozenset(
    {
        ID_COL,
        TIME_COL,
        X_COL,
        Y_COL,
        GEOM_COL,
        TIME_END_COL,
        "cell_x",
        "cell_y",
        "region_id",
        "t_bin",
    }
)


def _ident(name: Any, what: str) -> str:
    if not isinstance(name, str) or not _IDENT.match(name):
        raise QueryError(
            f"{what} {name!r} is not a valid name: use 1-63 letters, digits and '_', "
            "starting with a letter or '_'"
        )
    return name


class Agg(NamedTuple):
    """One aggregate: ``fn`` over ``column`` (``column`` None: count the rows)."""

    column: str | None
    fn: str


def normalise_aggs(aggs: Mapping[str, Any] | None) -> dict[str, Agg]:
    """One aggregation spec from every accepted form.

    ``{"n": "count"}`` counts rows; ``{"speed": "mean"}`` is the mean of column ``speed``
    named ``speed``; ``{"avg": ("speed", "mean")}`` (or a list, or
    ``{"column": "speed", "fn": "mean"}``) names the output ``avg``. Output and column names
    must be identifiers, and outputs may not reuse the answer's own columns
    (:data:`RESERVED_OUTPUT_NAMES`).

    Examples
    --------
    >>> normalise_aggs({"avg": ("speed", "mean"), "n": "count"})["avg"]
    Agg(column='speed', fn='mean')
    >>> normalise_aggs({"x": "count"})
    Traceback (most recent call last):
    ...
    cityos.errors.QueryError: aggregate output 'x' is reserved (the answer's own columns are id, t, x, y, cell_x, cell_y, geometry, region_id, t_bin, t_end); choose another name
    """
    if aggs is None:
        return {"n": Agg(None, "count")}
    if isinstance(aggs, str) or not isinstance(aggs, Mapping) or not aggs:
        raise QueryError(
            "aggs must be a non-empty mapping such as {'n': 'count', 'speed': 'mean'} "
            "or {'avg': ('speed', 'mean')}"
        )
    out: dict[str, Agg] = {}
    for name, a in aggs.items():
        _ident(name, "aggregate output")
        if name in RESERVED_OUTPUT_NAMES:
            order = "id, t, x, y, cell_x, cell_y, geometry, region_id, t_bin, t_end"
            raise QueryError(
                f"aggregate output {name!r} is reserved (the answer's own columns are "
                f"{order}); choose another name"
            )
        column: Any
        if isinstance(a, Agg):
            column, fn = a
        elif isinstance(a, str):
            fn = a
            column = None if a == "count" else name
        elif isinstance(a, Mapping) and set(a) <= {"column", "fn"} and "fn" in a:
            column, fn = a.get("column"), a["fn"]
        elif isinstance(a, tuple | list) and len(a) == 2:
            column, fn = a
        else:
            raise QueryError(
                f"aggregate {name!r}: {a!r} is not a function name ('count', 'sum', 'mean', "
                "'min', 'max'), a (column, function) pair or {'column': ..., 'fn': ...}"
            )
        if fn not in AGG_FUNCTIONS:
            raise QueryError(
                f"aggregate {name!r}: unknown function {fn!r}; use one of {', '.join(AGG_FUNCTIONS)}"
            )
        if column is not None:
            _ident(column, f"aggregate {name!r}: column")
        elif fn != "count":
            raise QueryError(f"aggregate {name!r}: {fn!r} needs a column")
        out[name] = Agg(column, fn)
    return out


# -- the grid ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Grid:
    """A regular grid: origin (x0, y0) and cell size (dx, dy) in ``crs`` (``None``: the
    dataset's CRS).

    :meth:`from_metres` without a CRS makes a grid sized in metres that takes the dataset's
    CRS when the query runs (degrees on lon/lat data, metres on projected data).

    Examples
    --------
    >>> g = Grid.from_metres((116.0, 39.6, 116.8, 40.2), 1000, crs="EPSG:4326")
    >>> round(g.dy, 5)
    0.00898
    >>> utm = Grid.from_metres((440000, 4400000, 460000, 4420000), 1000).resolve("EPSG:32650")
    >>> utm.dx, utm.crs
    (1000.0, 'EPSG:32650')
    """

    x0: float
    y0: float
    dx: float
    dy: float
    crs: str | None = None
    #: set by :meth:`from_metres` without a CRS: (bbox, cell size) resolved per dataset
    metres: tuple[tuple[float, float, float, float], float] | None = None

    def __post_init__(self) -> None:
        vals = (self.x0, self.y0, self.dx, self.dy)
        if not all(isinstance(v, int | float) and np.isfinite(v) for v in vals):
            raise QueryError(f"grid origin and cell size must be finite numbers, got {vals}")
        if self.dx <= 0 or self.dy <= 0:
            raise QueryError(f"grid cell size must be positive, got ({self.dx}, {self.dy})")

    @classmethod
    def from_metres(
        cls,
        bbox: tuple[float, float, float, float],
        cell_m: float,
        geographic: bool | None = None,
        *,
        crs: Any = None,
    ) -> Grid:
        """A grid of about ``cell_m`` metres over ``bbox``.

        ``crs`` names the CRS of ``bbox`` (and of the grid); without it the grid follows
        the CRS of the dataset it aggregates. ``geographic`` (deprecated in favour of
        ``crs``) forces lon/lat (True) or projected metres (False) without naming a CRS.
        """
        if not isinstance(cell_m, int | float) or not np.isfinite(cell_m) or cell_m <= 0:
            raise QueryError(f"grid cell size must be a positive number of metres, got {cell_m}")
        b = tuple(float(v) for v in bbox)
        if len(b) != 4 or not all(np.isfinite(b)) or b[0] > b[2] or b[1] > b[3]:
            raise QueryError(f"grid bbox {bbox} must be finite (xmin, ymin, xmax, ymax)")
        box = (b[0], b[1], b[2], b[3])
        if crs is not None:
            from cityos.store._plan import user_crs

            norm = user_crs(crs, "grid crs")
            from cityos.geo.crs import is_geographic

            return cls._sized(box, float(cell_m), is_geographic(norm), norm)
        if geographic is not None:
            return cls._sized(box, float(cell_m), bool(geographic), None)
        return cls(box[0], box[1], float(cell_m), float(cell_m), None, (box, float(cell_m)))

    @classmethod
    def _sized(
        cls,
        bbox: tuple[float, float, float, float],
        cell_m: float,
        geographic: bool,
        crs: str | None,
    ) -> Grid:
        if not geographic:
            return cls(bbox[0], bbox[1], cell_m, cell_m, crs)
        lat0 = (bbox[1] + bbox[3]) / 2
        if not -90 < lat0 < 90:
            raise QueryError(f"grid bbox {bbox} is not in longitude/latitude degrees")
        dy = cell_m / 111_320.0
        dx = cell_m / (111_320.0 * float(np.cos(np.radians(lat0))))
        return cls(bbox[0], bbox[1], dx, dy, crs)

    def resolve(self, dataset_crs: str) -> Grid:
        """This grid with its CRS fixed: a metre-sized grid without a CRS takes ``dataset_crs``."""
        if self.crs is not None:
            return self
        if self.metres is not None:
            from cityos.geo.crs import is_geographic

            box, cell_m = self.metres
            return self._sized(box, cell_m, is_geographic(dataset_crs), dataset_crs)
        return Grid(self.x0, self.y0, self.dx, self.dy, dataset_crs)

    def cells(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cell indices of points given in the grid's CRS."""
        if self.metres is not None and self.crs is None:
            raise QueryError(
                "this grid is sized in metres and takes its CRS from the dataset; call "
                "grid.resolve(crs) before computing cells yourself"
            )
        return (
            np.floor((x - self.x0) / self.dx).astype(np.int64),
            np.floor((y - self.y0) / self.dy).astype(np.int64),
        )


# -- the specs --------------------------------------------------------------------------------
@dataclass(frozen=True)
class QuerySpec:
    """Base of every query: the dataset it reads first."""

    kind: ClassVar[str] = "query"
    dataset: str

    def datasets(self) -> tuple[str, ...]:
        """Every dataset this query reads (the first is :attr:`dataset`)."""
        return (self.dataset,)

    def reads(self) -> dict[str, tuple[str, ...]]:
        """Columns the query computes over without returning them, per dataset (an
        aggregate's inputs); the rows it returns are masked where they leave."""
        return {}


@dataclass(frozen=True)
class Scan(QuerySpec):
    """Rows matching any combination of geometry, time window [start, end) and ids."""

    kind: ClassVar[str] = "scan"
    geometry: Any = None
    start: Any = None
    end: Any = None
    crs: Any = None
    columns: tuple[str, ...] | None = None
    ids: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class Range(Scan):
    """Rows inside a geometry."""

    kind: ClassVar[str] = "range"

    def __post_init__(self) -> None:
        if self.geometry is None:
            raise QueryError(f"{self.kind} needs a geometry (a bbox, WKT or shapely geometry)")


@dataclass(frozen=True)
class STRange(Range):
    """Rows inside a geometry with start <= t < end (the dataset must have time; an
    end given as None leaves the window open on that side)."""

    kind: ClassVar[str] = "st_range"


@dataclass(frozen=True)
class IDTemporal(QuerySpec):
    """Every row of the given objects in a time window."""

    kind: ClassVar[str] = "id_temporal"
    ids: tuple[Any, ...] = ()
    start: Any = None
    end: Any = None


@dataclass(frozen=True)
class KNN(QuerySpec):
    """The ``k`` rows nearest to (x, y), optionally within a time window."""

    kind: ClassVar[str] = "knn"
    x: float = 0.0
    y: float = 0.0
    k: int = 1
    start: Any = None
    end: Any = None
    crs: Any = None


@dataclass(frozen=True)
class KNNTrajectories(KNN):
    """The ``k`` objects whose trajectories come nearest to (x, y) in a time window."""

    kind: ClassVar[str] = "knn_trajectories"


@dataclass(frozen=True)
class Similar(QuerySpec):
    """The ``k`` objects whose trajectories in a time window are most similar to a query
    trajectory under DTW or discrete Fréchet distance."""

    kind: ClassVar[str] = "similar"
    coords: Any = None
    k: int = 1
    start: Any = None
    end: Any = None
    metric: str = "dtw"
    crs: Any = None


@dataclass(frozen=True)
class JoinRegions(QuerySpec):
    """Points joined with the regions (of another dataset) that contain them."""

    kind: ClassVar[str] = "join_regions"
    regions: str = ""
    start: Any = None
    end: Any = None
    geometry: Any = None
    crs: Any = None

    def datasets(self) -> tuple[str, ...]:
        return (self.dataset, self.regions)


@dataclass(frozen=True)
class JoinNearest(QuerySpec):
    """Points joined with the nearest line (e.g. road segment) within ``max_distance_m``."""

    kind: ClassVar[str] = "join_nearest"
    lines: str = ""
    max_distance_m: float = 50.0
    start: Any = None
    end: Any = None
    geometry: Any = None
    crs: Any = None

    def datasets(self) -> tuple[str, ...]:
        return (self.dataset, self.lines)


@dataclass(frozen=True)
class Aggregate(QuerySpec):
    """Counts, sums, means, minima or maxima of points per grid cell (or region) and time
    bin: a spatial time series. ``aggs`` is normalised by :func:`normalise_aggs`."""

    kind: ClassVar[str] = "aggregate"
    grid: Grid | None = None
    regions: str | None = None
    time_bin: str | None = "1h"
    aggs: Mapping[str, Any] = field(default_factory=lambda: {"n": "count"})
    start: Any = None
    end: Any = None
    geometry: Any = None
    crs: Any = None

    def __post_init__(self) -> None:
        if (self.grid is None) == (self.regions is None):
            raise QueryError("aggregate needs exactly one of grid=Grid(...) or regions='<dataset>'")
        if self.grid is not None and not isinstance(self.grid, Grid):
            raise QueryError(f"grid must be a cityos.store.Grid, not {type(self.grid).__name__}")
        object.__setattr__(self, "aggs", normalise_aggs(self.aggs))

    @property
    def agg_specs(self) -> dict[str, Agg]:
        out: dict[str, Agg] = dict(self.aggs)
        return out

    def agg_columns(self) -> list[str]:
        return list(dict.fromkeys(a.column for a in self.agg_specs.values() if a.column))

    def datasets(self) -> tuple[str, ...]:
        return (self.dataset,) if self.regions is None else (self.dataset, self.regions)

    def reads(self) -> dict[str, tuple[str, ...]]:
        return {self.dataset: tuple(self.agg_columns())}


# -- the convenience forms ----------------------------------------------------------------------
def _ids(ids: Any) -> tuple[Any, ...]:
    if isinstance(ids, str | bytes | int | float | np.generic):
        return (ids.item() if isinstance(ids, np.generic) else ids,)
    try:
        arr = np.asarray(ids, dtype=object)
    except (TypeError, ValueError) as exc:
        raise QueryError(
            f"ids must be an id or a flat list of ids, not {type(ids).__name__}"
        ) from exc
    if arr.ndim != 1:
        raise QueryError("ids must be an id or a flat list of ids (strings or integers)")
    return tuple(v.item() if isinstance(v, np.generic) else v for v in arr.tolist())


def scan(
    name: str,
    *,
    columns: list[str] | tuple[str, ...] | None = None,
    geometry: Any = None,
    start: Any = None,
    end: Any = None,
    ids: Any = None,
    crs: Any = None,
) -> Scan:
    """Rows matching any combination of geometry, time window [start, end) and ids."""
    return Scan(
        name,
        geometry,
        start,
        end,
        crs,
        None if columns is None else tuple(columns),
        None if ids is None else _ids(ids),
    )


def read(name: str) -> Scan:
    """Every row of a dataset."""
    return Scan(name)


def range(name: str, geometry: Any, *, crs: Any = None) -> Range:
    """Spatial range query: rows inside ``geometry`` (bbox tuple, WKT or shapely)."""
    return Range(name, geometry, None, None, crs)


def st_range(name: str, geometry: Any, start: Any, end: Any, *, crs: Any = None) -> STRange:
    """Spatio-temporal range query: rows inside ``geometry`` with start <= t < end."""
    return STRange(name, geometry, start, end, crs)


def id_temporal(name: str, ids: Any, start: Any = None, end: Any = None) -> IDTemporal:
    """Every row of the given object id(s) in [start, end)."""
    return IDTemporal(name, _ids(ids), start, end)


def knn(
    name: str, x: float, y: float, k: int, *, start: Any = None, end: Any = None, crs: Any = None
) -> KNN:
    """The ``k`` points nearest to (x, y), with ``distance_m``."""
    return KNN(name, x, y, k, start, end, crs)


def knn_trajectories(
    name: str, x: float, y: float, k: int, *, start: Any = None, end: Any = None, crs: Any = None
) -> KNNTrajectories:
    """The ``k`` objects that pass nearest to (x, y) in the window (``id``, ``distance_m``)."""
    return KNNTrajectories(name, x, y, k, start, end, crs)


def similar(
    name: str,
    trajectory: Any,
    k: int,
    *,
    start: Any = None,
    end: Any = None,
    metric: str = "dtw",
    crs: Any = None,
) -> Similar:
    """The ``k`` objects whose trajectories in the window are most similar to ``trajectory``."""
    return Similar(name, trajectory, k, start, end, metric, crs)


def join_regions(
    name: str,
    regions: str,
    *,
    start: Any = None,
    end: Any = None,
    geometry: Any = None,
    crs: Any = None,
) -> JoinRegions:
    """Points joined with the regions containing them (adds ``region_id``)."""
    return JoinRegions(name, regions, start, end, geometry, crs)


def join_nearest(
    name: str,
    lines: str,
    *,
    max_distance_m: float = 50.0,
    start: Any = None,
    end: Any = None,
    geometry: Any = None,
    crs: Any = None,
) -> JoinNearest:
    """Points joined with the nearest line within ``max_distance_m`` (adds ``edge_id``,
    ``distance_m``)."""
    return JoinNearest(name, lines, max_distance_m, start, end, geometry, crs)


def aggregate(
    name: str,
    *,
    grid: Grid | None = None,
    regions: str | None = None,
    time_bin: str | None = "1h",
    aggs: Mapping[str, Any] | None = None,
    start: Any = None,
    end: Any = None,
    geometry: Any = None,
    crs: Any = None,
) -> Aggregate:
    """Aggregate points into grid cells or regions per time bin: a spatial time series
    (``id``, ``t``, ``x``, ``y``, aggregates)."""
    return Aggregate(name, grid, regions, time_bin, normalise_aggs(aggs), start, end, geometry, crs)


#: Convenience query name -> the function building its spec; ``Store`` and ``SecureStore``
#: both expose exactly these, with exactly these parameters (plus ``engine``).
QUERIES: dict[str, Callable[..., QuerySpec]] = {
    "scan": scan,
    "read": read,
    "range": range,
    "st_range": st_range,
    "id_temporal": id_temporal,
    "knn": knn,
    "knn_trajectories": knn_trajectories,
    "similar": similar,
    "join_regions": join_regions,
    "join_nearest": join_nearest,
    "aggregate": aggregate,
}
