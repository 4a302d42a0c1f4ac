"""Turning a query answer into a response: a JSON or GeoJSON page for small answers, an
Arrow IPC stream for large ones; ``offset``/``limit`` page through either."""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from typing import Any

import pyarrow as pa
from fastapi import Response

from cityos.access import SecureResult
from cityos.geo.geojson import features

try:  # optional speed-up (the ``server`` extra): ~10x faster encoding of row pages
    import orjson
except ImportError:  # pragma: no cover - exercised only without the extra
    orjson = None  # type: ignore[assignment]

__all__ = ["ARROW", "ARROW_MAX", "GEOJSON", "JSON_MAX", "render"]

ARROW = "application/vnd.apache.arrow.stream"
GEOJSON = "application/geo+json"
#: Largest page of JSON rows; larger answers page, or ask for Arrow.
JSON_MAX = 1000
ARROW_MAX = 1_000_000


def _jsonable(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, bytes):
        import shapely

        try:
            return shapely.from_wkb(v).wkt
        except Exception:  # not WKB: opaque bytes go out as hex
            return v.hex()
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    if orjson is not None:
        # orjson writes datetimes as isoformat() does and non-finite floats as null;
        # only bytes (WKB) reach _orjson_default
        rows: list[dict[str, Any]] = table.to_pylist()
        return rows
    return [{k: _jsonable(v) for k, v in r.items()} for r in table.to_pylist()]


def _orjson_default(v: Any) -> Any:
    if isinstance(v, bytes):
        return _jsonable(v)
    raise TypeError(f"{type(v).__name__} is not JSON serialisable")


def _dumps(body: dict[str, Any]) -> bytes:
    if orjson is not None:
        return orjson.dumps(body, default=_orjson_default)
    return json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")


def render(
    result: SecureResult, *, fmt: str | None, accept: str | None, offset: int, limit: int | None
) -> Response:
    """The response for one page of ``result``.

    ``fmt`` (``json``, ``geojson`` or ``arrow``) wins over the ``Accept`` header; the
    default is JSON.
    """
    if fmt is None:
        fmt = "arrow" if accept and ARROW in accept else "json"
    total = result.table.num_rows
    cap = ARROW_MAX if fmt == "arrow" else JSON_MAX
    lim = min(limit if limit is not None else (cap if fmt == "arrow" else 100), cap)
    page = result.table.slice(offset, lim)
    nxt = offset + lim if offset + lim < total else None
    headers = {"X-Total-Count": str(total), "X-Masked-Columns": ",".join(result.masked)}
    if nxt is not None:
        headers["X-Next-Offset"] = str(nxt)
    if fmt == "arrow":
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, page.schema) as writer:
            writer.write_table(page)
        return Response(sink.getvalue().to_pybytes(), media_type=ARROW, headers=headers)
    if fmt == "geojson":
        body: dict[str, Any] = {
            "type": "FeatureCollection",
            "features": features(page, _jsonable),
            "total": total,
            "offset": offset,
            "next_offset": nxt,
        }
        media = GEOJSON
    else:
        body = {
            "total": total,
            "offset": offset,
            "limit": lim,
            "next_offset": nxt,
            "columns": page.column_names,
            "masked": result.masked,
            "rows": _rows(page),
        }
        media = "application/json"
    return Response(_dumps(body), media_type=media, headers=headers)
