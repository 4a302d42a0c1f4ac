"""Mapbox Vector Tiles from store datasets: the Web Mercator tile grid, and encoding one
tile's rows (points, lines, polygons) with their attributes."""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import pyarrow as pa

from cityos.twin.errors import TwinRequestError

__all__ = ["EXTENT", "MVT", "encode_tile", "tile_bbox"]

MVT = "application/vnd.mapbox-vector-tile"
EXTENT = 4096
_R = 6378137.0
_HALF = math.pi * _R
_MAX_LAT = 85.0511287798066


def tile_bbox(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """The lon/lat bounds of tile ``z/x/y`` (XYZ scheme, y down from the north).

    Examples
    --------
    >>> [round(v, 4) for v in tile_bbox(1, 1, 0)]
    [0.0, 0.0, 180.0, 85.0511]
    """
    if not 0 <= z <= 24:
        raise TwinRequestError(f"tile zoom must be 0..24, got {z}")
    n = 1 << z
    if not (0 <= x < n and 0 <= y < n):
        raise TwinRequestError(f"tile {z}/{x}/{y} does not exist: x and y must be 0..{n - 1}")

    def lat(yy: int) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * yy / n))))

    return (x / n * 360 - 180, lat(y + 1), (x + 1) / n * 360 - 180, lat(y))


def _merc(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    yy = np.clip(y, -_MAX_LAT, _MAX_LAT)
    return np.radians(x) * _R, np.log(np.tan(np.pi / 4 + np.radians(yy) / 2)) * _R


def _varint(n: int, out: bytearray) -> None:
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return


def _key(field: int, wire: int, out: bytearray) -> None:
    _varint((field << 3) | wire, out)


def _bytes(field: int, data: bytes | bytearray, out: bytearray) -> None:
    _key(field, 2, out)
    _varint(len(data), out)
    out += data


def _zz(v: int) -> int:
    return (v << 1) ^ (v >> 63)


def _value(v: Any) -> bytes | None:
    """A ``Value`` message: strings, bools, 64-bit ints and doubles."""
    out = bytearray()
    if isinstance(v, bool):
        _key(7, 0, out)
        _varint(int(v), out)
    elif isinstance(v, int):
        _key(6, 0, out)  # sint64
        _varint(_zz(v) & 0xFFFFFFFFFFFFFFFF, out)
    elif isinstance(v, float):
        if not math.isfinite(v):
            return None
        _key(3, 1, out)
        out += struct.pack("<d", v)
    else:
        _bytes(1, str(v).encode("utf-8"), out)
    return bytes(out)


def _cmd(cid: int, count: int) -> int:
    return (cid & 7) | (count << 3)


class _Cursor:
    """Geometry commands with zig-zag deltas from the previous point."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.ints: list[int] = []

    def points(self, pts: np.ndarray) -> None:
        for i, (px, py) in enumerate(pts.tolist()):
            if i == 0:
                self.ints.append(_cmd(1, 1))
            elif i == 1:
                self.ints.append(_cmd(2, len(pts) - 1))
            self.ints += [_zz(px - self.x), _zz(py - self.y)]
            self.x, self.y = px, py

    def multipoint(self, pts: np.ndarray) -> None:
        self.ints.append(_cmd(1, len(pts)))
        for px, py in pts.tolist():
            self.ints += [_zz(px - self.x), _zz(py - self.y)]
            self.x, self.y = px, py


def _ring_area(r: np.ndarray) -> float:
    x, y = r[:, 0].astype(float), r[:, 1].astype(float)
    return float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def _dedup(c: np.ndarray) -> np.ndarray:
    if len(c) < 2:
        return c
    keep = np.ones(len(c), dtype=bool)
    keep[1:] = np.any(c[1:] != c[:-1], axis=1)
    return c[keep]


def _geometry(g: Any, q: Any) -> tuple[int, list[int]] | None:
    """(GeomType, command integers) of a Web Mercator shapely geometry; ``q`` maps
    coordinates to integer tile coordinates."""
    import shapely

    cur = _Cursor()
    kind = shapely.get_type_id(g)
    if kind in (0, 4):  # (multi)point
        pts = q(shapely.get_coordinates(g))
        cur.multipoint(pts)
        return 1, cur.ints
    if kind in (1, 2, 5):  # (multi)line
        for part in shapely.get_parts(g):
            c = _dedup(q(shapely.get_coordinates(part)))
            if len(c) >= 2:
                cur.points(c)
        return (2, cur.ints) if cur.ints else None
    if kind in (3, 6):  # (multi)polygon
        for poly in shapely.get_parts(g):
            rings = [shapely.get_exterior_ring(poly)] + [
                shapely.get_interior_ring(poly, k)
                for k in range(shapely.get_num_interior_rings(poly))
            ]
            for n, ring in enumerate(rings):
                c = _dedup(q(shapely.get_coordinates(ring)))
                if len(c) > 1 and (c[0] == c[-1]).all():
                    c = c[:-1]
                if len(c) < 3:
                    continue
                area = _ring_area(c)
                if area == 0:
                    continue
                # exterior rings clockwise on screen (positive area, y down), holes not
                if (area > 0) != (n == 0):
                    c = c[::-1]
                cur.points(c)
                cur.ints.append(_cmd(7, 1))
        return (3, cur.ints) if cur.ints else None
    return None


def _props(table: pa.Table) -> list[dict[str, Any]]:
    keep = [c for c in table.column_names if c not in ("x", "y", "geometry")]
    sub = table.select(keep)
    cols = {}
    for name in keep:
        col = sub[name]
        if pa.types.is_timestamp(col.type):
            cols[name] = [None if v is None else v.isoformat() for v in col.to_pylist()]
        elif pa.types.is_binary(col.type) or pa.types.is_nested(col.type):
            continue
        else:
            cols[name] = col.to_pylist()
    n = table.num_rows
    return [{k: v[i] for k, v in cols.items() if v[i] is not None} for i in range(n)]


def encode_tile(table: pa.Table, layer: str, z: int, x: int, y: int) -> bytes:
    """One MVT tile with one layer named ``layer`` holding ``table``'s rows.

    Point rows use their ``x``/``y``; other rows their WKB ``geometry``; coordinates are
    lon/lat (EPSG:4326), projected to Web Mercator and quantised to a 4096 extent.

    Examples
    --------
    >>> import pyarrow as pa
    >>> t = pa.table({"id": ["a"], "x": [116.39], "y": [39.9], "v": [1.5]})
    >>> tile = encode_tile(t, "pts", 10, 843, 388)
    >>> tile.startswith(b"\\x1a") and b"pts" in tile  # field 3 of Tile: one layer
    True
    """
    import shapely

    minx, miny, maxx, maxy = tile_bbox(z, x, y)
    (bx0, bx1), (by0, by1) = _merc(np.array([minx, maxx]), np.array([miny, maxy]))
    sx, sy = EXTENT / (bx1 - bx0), EXTENT / (by1 - by0)

    def q(c: np.ndarray) -> np.ndarray:
        return np.column_stack(
            [np.round((c[:, 0] - bx0) * sx), np.round((by1 - c[:, 1]) * sy)]
        ).astype(np.int64)

    props = _props(table)
    if {"x", "y"} <= set(table.column_names):
        mx, my = _merc(
            table["x"].to_numpy(zero_copy_only=False).astype(float),
            table["y"].to_numpy(zero_copy_only=False).astype(float),
        )
        geoms = shapely.points(mx, my)
    elif "geometry" in table.column_names:
        raw = shapely.from_wkb(
            np.asarray(table["geometry"].to_numpy(zero_copy_only=False), dtype=object)
        )
        merc = shapely.transform(raw, lambda c: np.column_stack(_merc(c[:, 0], c[:, 1])))
        pad_x, pad_y = (bx1 - bx0) / 16, (by1 - by0) / 16
        geoms = shapely.clip_by_rect(merc, bx0 - pad_x, by0 - pad_y, bx1 + pad_x, by1 + pad_y)
    else:
        raise TwinRequestError(f"dataset {layer!r} has no geometry to draw as a vector tile")
    keys: dict[str, int] = {}
    values: dict[bytes, int] = {}
    feats = bytearray()
    for i, (g, p) in enumerate(zip(geoms, props, strict=True)):
        if g is None or shapely.is_empty(g):
            continue
        geom = _geometry(g, q)
        if geom is None:
            continue
        tags: list[int] = []
        for k, v in p.items():
            enc = _value(v)
            if enc is None:
                continue
            tags += [keys.setdefault(k, len(keys)), values.setdefault(enc, len(values))]
        f = bytearray()
        _key(1, 0, f)
        _varint(i, f)
        if tags:
            packed = bytearray()
            for t in tags:
                _varint(t, packed)
            _bytes(2, packed, f)
        _key(3, 0, f)
        _varint(geom[0], f)
        packed = bytearray()
        for v in geom[1]:
            _varint(v, packed)
        _bytes(4, packed, f)
        _bytes(2, f, feats)
    lay = bytearray()
    _key(15, 0, lay)
    _varint(2, lay)
    _bytes(1, layer.encode("utf-8"), lay)
    lay += feats
    for k in keys:
        _bytes(3, k.encode("utf-8"), lay)
    for v in values:
        _bytes(4, v, lay)
    _key(5, 0, lay)
    _varint(EXTENT, lay)
    out = bytearray()
    _bytes(3, lay, out)
    return bytes(out)
