"""The twin's HTTP routes: Arrow layers (``/twin/layers``), OGC API – Features
(``/ogc``), Mapbox Vector Tiles (``/tiles``) and the dashboard itself (``/``, ``/twin/``).

The routers are built around the server's ``StoreDep`` (a
:class:`cityos.access.SecureStore` for the caller), passed in by the server, so every data
route authenticates, authorises the dataset, applies row filters, masks personal fields
and audits exactly as the dataset query routes do, while this layer imports nothing above it.
"""

# No ``from __future__ import annotations``: FastAPI must see the ``store_dep`` annotation
# of the closures below as an object, not as a name to look up in this module.

import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse

from cityos.twin._layers import (
    ARROW,
    MAX_ROWS,
    LayerRequest,
    arrow_stream,
    layer_kind,
    layer_table,
    parse_bbox,
    parse_datetime,
    parse_time,
)
from cityos.twin._ogc import (
    CONFORMANCE,
    GEOJSON,
    collection_doc,
    feature_collection,
    feature_id,
    features,
    landing_doc,
)
from cityos.twin._tiles import MVT, encode_tile, tile_bbox

__all__ = ["install", "routers", "static_dir"]

NAME = r"^[a-z][a-z0-9_]{0,62}$"
OGC_MAX = 10_000
TILE_MAX = 50_000


def static_dir() -> Path:
    """Where the built dashboard lives inside the package."""
    return Path(str(resources.files("cityos.twin"))) / "static"


def _secure(store: object) -> Any:
    """The caller's SecureStore (typed loosely: its annotation is the server's dependency)."""
    return store


def _layer_doc(secure: Any, info: Any) -> dict[str, Any]:
    schema = info.schema
    d = info.to_dict() if hasattr(info, "to_dict") else {}
    dec = secure.can_read(info.name)
    kind = layer_kind(str(schema.model), str(schema.geometry_type))
    return {
        "name": info.name,
        "model": str(schema.model),
        "geometry_type": str(schema.geometry_type),
        "kind": kind,
        "description": info.description,
        "rows": info.rows,
        "bbox": list(info.bbox) if info.bbox else None,
        "t_min": d.get("t_min"),
        "t_max": d.get("t_max"),
        "network": schema.network,
        "fields": [
            {"name": f.name, "type": f.type, "unit": f.unit, "personal": f.personal}
            for f in schema.fields
        ],
        "masked_fields": [
            f.name for f in schema.fields if f.personal and not dec.shows(f.personal)
        ],
        "arrow": f"/twin/layers/{info.name}.arrow",
        "tiles": None
        if kind in ("network_series", "table")
        else f"/tiles/{info.name}/{{z}}/{{x}}/{{y}}.mvt",
    }


def routers(store_dep: Any) -> list[APIRouter]:
    """The twin's routers, reading through ``store_dep`` (the server's ``StoreDep``)."""
    layers = APIRouter(prefix="/twin", tags=["twin"])
    ogc = APIRouter(prefix="/ogc", tags=["ogc"])
    tiles = APIRouter(prefix="/tiles", tags=["tiles"])
    Store = store_dep

    @layers.get("/layers")
    def list_layers(store: Store) -> list[dict[str, Any]]:  # type: ignore[valid-type]
        """The map layers you may read: one per dataset, with its kind, extent and URLs."""
        return [_layer_doc(store, d) for d in _secure(store).list_datasets()]

    @layers.get(
        "/layers/{dataset}.arrow",
        responses={200: {"content": {ARROW: {"schema": {"type": "string", "format": "binary"}}}}},
        response_class=Response,
    )
    def layer_arrow(
        store: Store,  # type: ignore[valid-type]
        dataset: Annotated[str, PathParam(pattern=NAME)],
        bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy (viewport)")] = None,
        start: Annotated[str | None, Query(description="ISO time or epoch ms, inclusive")] = None,
        end: Annotated[str | None, Query(description="ISO time or epoch ms, exclusive")] = None,
        limit: Annotated[int | None, Query(ge=1, le=MAX_ROWS)] = None,
        columns: Annotated[str | None, Query(description="comma-separated fields")] = None,
    ) -> Response:
        """One layer as an Arrow IPC stream filtered by viewport and time window: times as
        float64 epoch ms, lines and polygons as flat ``path`` coordinates (headers
        X-Total-Count, X-Masked-Columns, X-Truncated)."""
        req = LayerRequest(
            parse_bbox(bbox),
            parse_time(start, "start"),
            parse_time(end, "end"),
            limit,
            tuple(columns.split(",")) if columns else None,
        )
        table, masked, total = layer_table(store, dataset, req)
        headers = {
            "X-Total-Count": str(total),
            "X-Masked-Columns": ",".join(masked),
            "X-Truncated": "1" if table.num_rows < total else "0",
            "Cache-Control": "no-store",
        }
        # the IPC buffer goes out as it is, without a copy into a bytes object
        return Response(memoryview(arrow_stream(table)), media_type=ARROW, headers=headers)

    @layers.get("/flows/{dataset}")
    def flows(
        store: Store,  # type: ignore[valid-type]
        dataset: Annotated[str, PathParam(pattern=NAME)],
        start: Annotated[str, Query(description="ISO time or epoch ms, inclusive")],
        end: Annotated[str, Query(description="ISO time or epoch ms, exclusive")],
        regions: Annotated[str, Query(pattern=NAME, description="polygon dataset")] = "districts",
        bbox: Annotated[str | None, Query(description="only trips from or to it")] = None,
    ) -> dict[str, Any]:
        """Trips of a moving-object dataset between regions in ``[start, end)``:
        origin-destination counts (OD arcs) and each region's inflow and outflow."""
        from cityos.twin._flows import od_flows

        return od_flows(
            store,
            dataset,
            regions,
            parse_time(start, "start"),
            parse_time(end, "end"),
            parse_bbox(bbox),
        ).to_dict()

    # -- OGC API – Features -------------------------------------------------------------
    def _base(request: Request) -> str:
        return str(request.base_url).rstrip("/") + "/ogc"

    @ogc.get("")
    def ogc_landing(request: Request) -> dict[str, Any]:
        """OGC API – Features landing page."""
        return landing_doc(_base(request))

    @ogc.get("/conformance")
    def ogc_conformance() -> dict[str, Any]:
        """The conformance classes implemented (Core, GeoJSON, OpenAPI 3.0)."""
        return {"conformsTo": CONFORMANCE}

    def _spatial(store: Any) -> list[Any]:
        return [d for d in _secure(store).list_datasets() if d.schema.model.has_geometry]

    @ogc.get("/collections")
    def ogc_collections(request: Request, store: Store) -> dict[str, Any]:  # type: ignore[valid-type]
        """The spatial datasets you may read, as collections."""
        base = _base(request)
        return {
            "links": [{"href": f"{base}/collections", "rel": "self", "type": "application/json"}],
            "collections": [collection_doc(base, d) for d in _spatial(store)],
        }

    @ogc.get("/collections/{collection}")
    def ogc_collection(
        request: Request,
        store: Store,  # type: ignore[valid-type]
        collection: Annotated[str, PathParam(pattern=NAME)],
    ) -> dict[str, Any]:
        """One collection with its extent."""
        return collection_doc(_base(request), _secure(store).describe(collection))

    @ogc.get("/collections/{collection}/items", response_class=Response)
    def ogc_items(
        request: Request,
        store: Store,  # type: ignore[valid-type]
        collection: Annotated[str, PathParam(pattern=NAME)],
        bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy (CRS84)")] = None,
        datetime: Annotated[
            str | None, Query(description="instant or start/end, '..' open")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=OGC_MAX)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> Response:
        """Features of a collection as GeoJSON, filtered by ``bbox`` and ``datetime``,
        paged by ``limit``/``offset`` with ``next``/``prev`` links."""
        s, e = parse_datetime(datetime)
        info = _secure(store).describe(collection)
        req = LayerRequest(parse_bbox(bbox), s, e)
        table, masked, total = layer_table(store, collection, req)
        page = table.slice(offset, limit)
        url = request.url

        def at(o: int) -> str:
            return str(url.include_query_params(offset=o, limit=limit))

        nxt = at(offset + limit) if offset + limit < total else None
        prev = at(max(offset - limit, 0)) if offset > 0 else None
        body = feature_collection(
            page,
            tuple(info.schema.key),
            total=total,
            offset=offset,
            limit=limit,
            self_url=str(url),
            next_url=nxt,
            prev_url=prev,
        )
        return Response(
            json.dumps(body, ensure_ascii=False, allow_nan=False),
            media_type=GEOJSON,
            headers={"X-Masked-Columns": ",".join(masked)},
        )

    @ogc.get("/collections/{collection}/items/{fid}", response_class=Response)
    def ogc_item(
        request: Request,
        store: Store,  # type: ignore[valid-type]
        collection: Annotated[str, PathParam(pattern=NAME)],
        fid: str,
    ) -> Response:
        """One feature by its id (the record key; key parts joined by ``~``)."""
        from cityos.errors import DatasetNotFound

        info = _secure(store).describe(collection)
        key = tuple(info.schema.key)
        ident: Any = fid.split("~")[0]
        if info.schema.id_type == "int64":
            try:
                ident = int(ident)
            except ValueError:
                raise DatasetNotFound(f"{collection}/items/{fid}") from None
        table = _secure(store).scan(collection, ids=[ident]).table
        rows = [i for i, r in enumerate(table.to_pylist()) if str(feature_id(r, key)) == fid]
        if not rows:
            raise DatasetNotFound(f"{collection}/items/{fid}")
        feat = features(table.take(pa.array(rows[:1])), key)[0]
        feat["links"] = [
            {"href": str(request.url), "rel": "self", "type": GEOJSON},
            {
                "href": f"{_base(request)}/collections/{collection}",
                "rel": "collection",
                "type": "application/json",
            },
        ]
        return Response(json.dumps(feat, ensure_ascii=False), media_type=GEOJSON)

    # -- vector tiles -------------------------------------------------------------------
    @tiles.get("/{dataset}/{z}/{x}/{y}.mvt", response_class=Response)
    def tile(
        store: Store,  # type: ignore[valid-type]
        dataset: Annotated[str, PathParam(pattern=NAME)],
        z: int,
        x: int,
        y: int,
        start: Annotated[str | None, Query()] = None,
        end: Annotated[str | None, Query()] = None,
        datetime: Annotated[str | None, Query(description="instant or start/end")] = None,
        limit: Annotated[int, Query(ge=1, le=TILE_MAX)] = TILE_MAX,
    ) -> Response:
        """One Mapbox Vector Tile of a dataset (layer named after it), filtered to the
        tile and the time window (``start``/``end`` or ``datetime``)."""
        s, e = parse_datetime(datetime) if datetime else (parse_time(start), parse_time(end))
        minx, miny, maxx, maxy = tile_bbox(z, x, y)
        # a small buffer so lines and points on the edge draw across tiles
        bx, by = (maxx - minx) / 64, (maxy - miny) / 64
        req = LayerRequest((minx - bx, miny - by, maxx + bx, maxy + by), s, e, limit)
        table, masked, _ = layer_table(store, dataset, req)
        return Response(
            encode_tile(table, dataset, z, x, y),
            media_type=MVT,
            headers={"X-Masked-Columns": ",".join(masked)},
        )

    return [layers, ogc, tiles]


_MISSING = """<!doctype html><meta charset=utf-8><title>CityOS twin</title>
<p>The dashboard is not built into this installation. Run <code>scripts/setup.sh</code>
(it builds <code>web/</code> with Node) or install a CityOS package that ships it.</p>"""


def _mount_static(app: FastAPI) -> None:
    from fastapi.staticfiles import StaticFiles

    root = static_dir()
    index = root / "index.html"

    def page() -> Response:
        if index.is_file():
            return FileResponse(
                index, media_type="text/html", headers={"Cache-Control": "no-cache"}
            )
        return HTMLResponse(_MISSING, status_code=503)

    app.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/twin", page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/twin/", page, methods=["GET"], include_in_schema=False)
    assets = root / "assets"
    if assets.is_dir():
        app.mount("/twin/assets", StaticFiles(directory=assets), name="twin-assets")


def install(app: FastAPI, store_dep: Any, responses: dict[int | str, Any] | None = None) -> None:
    """Add the twin's routes and the dashboard to ``app`` (called by the server, which
    passes its documented error ``responses`` so every twin route declares them)."""
    for r in routers(store_dep):
        app.include_router(r, responses=responses)
    _mount_static(app)
