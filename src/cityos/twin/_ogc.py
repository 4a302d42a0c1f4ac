"""OGC API – Features (Part 1: Core, GeoJSON) documents for store datasets: landing page,
conformance, collections with their extents, and pages of items with ``bbox``,
``datetime`` and ``limit``/``offset`` paging links."""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = [
    "CONFORMANCE",
    "collection_doc",
    "feature_collection",
    "features",
    "landing_doc",
]

GEOJSON = "application/geo+json"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
]
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"


def landing_doc(base: str) -> dict[str, Any]:
    """The landing page: links to the API definition, conformance and collections.

    Examples
    --------
    >>> sorted(link["rel"] for link in landing_doc("http://h/ogc")["links"])
    ['conformance', 'data', 'self', 'service-desc']
    """
    root = base.rsplit("/ogc", 1)[0]
    return {
        "title": "CityOS map services",
        "description": "The city's spatial datasets as OGC API – Features, under your rights",
        "links": [
            {"href": base, "rel": "self", "type": "application/json", "title": "this document"},
            {
                "href": f"{root}/openapi.json",
                "rel": "service-desc",
                "type": "application/vnd.oai.openapi+json;version=3.0",
                "title": "the API definition",
            },
            {"href": f"{base}/conformance", "rel": "conformance", "type": "application/json"},
            {"href": f"{base}/collections", "rel": "data", "type": "application/json"},
        ],
    }


def collection_doc(base: str, info: Any) -> dict[str, Any]:
    """One collection (a dataset) with its spatial and temporal extent."""
    href = f"{base}/collections/{info.name}"
    d = info.to_dict() if hasattr(info, "to_dict") else {}
    extent: dict[str, Any] = {}
    if info.bbox:
        extent["spatial"] = {"bbox": [list(info.bbox)], "crs": CRS84}
    if d.get("t_min") is not None:
        extent["temporal"] = {"interval": [[_iso(d.get("t_min")), _iso(d.get("t_max"))]]}
    return {
        "id": info.name,
        "title": info.name,
        "description": info.description,
        "itemType": "feature",
        "crs": [CRS84],
        "extent": extent,
        "links": [
            {"href": href, "rel": "self", "type": "application/json"},
            {"href": f"{href}/items", "rel": "items", "type": GEOJSON, "title": "features"},
        ],
    }


def _iso(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, int | float):
        import pandas as pd

        return str(pd.Timestamp(int(v), unit="ms", tz="UTC").isoformat())
    if isinstance(v, datetime | date):
        return v.isoformat()
    return str(v)


def _value(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, datetime | date):
        return v.isoformat().replace("+00:00", "Z")
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, np.generic):
        return v.item()
    return v


def feature_id(row: dict[str, Any], key: tuple[str, ...]) -> str | int:
    """The feature id: the record key (``id`` alone, or key parts joined by ``~``)."""
    if key == ("id",):
        v = row.get("id")
        return v if isinstance(v, int | str) else str(v)
    return "~".join(str(_value(row.get(k))) for k in key)


def features(table: pa.Table, key: tuple[str, ...]) -> list[dict[str, Any]]:
    """GeoJSON features with their ids: point datasets by ``x``/``y``, others by their WKB
    ``geometry`` (:func:`cityos.geo.geojson.features`)."""
    from cityos.geo.geojson import features as _features

    return _features(table, _value, lambda r: feature_id(r, key))


def feature_collection(
    table: pa.Table,
    key: tuple[str, ...],
    *,
    total: int,
    offset: int,
    limit: int,
    self_url: str,
    next_url: str | None,
    prev_url: str | None,
) -> dict[str, Any]:
    """One page of items with ``numberMatched``/``numberReturned`` and paging links."""
    from datetime import UTC

    links = [{"href": self_url, "rel": "self", "type": GEOJSON}]
    if next_url:
        links.append({"href": next_url, "rel": "next", "type": GEOJSON})
    if prev_url:
        links.append({"href": prev_url, "rel": "prev", "type": GEOJSON})
    feats = features(table, key)
    return {
        "type": "FeatureCollection",
        "timeStamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "numberMatched": total,
        "numberReturned": len(feats),
        "features": feats,
        "links": links,
    }
