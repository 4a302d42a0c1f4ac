"""Datasets: list, describe, every query type of the data engine, and appending records.

Each route parses its body, lets :class:`cityos.access.SecureStore` authorise, filter,
mask and audit the call, and renders one page of the answer.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Response

from cityos import access
from cityos.server._errors import ERRORS
from cityos.server._render import ARROW, ARROW_MAX, GEOJSON, render
from cityos.server.deps import CityDep, StoreDep
from cityos.server.schemas import (
    DATASET_NAME,
    AggregateQuery,
    DatasetPublic,
    FeatureCollection,
    IdTemporalQuery,
    JoinNearestQuery,
    JoinRegionsQuery,
    KnnQuery,
    PushProblem,
    QueryPage,
    RangeQuery,
    SimilarQuery,
    STRangeQuery,
    WriteRecords,
    WriteResultPublic,
)

router = APIRouter(prefix="/datasets", tags=["datasets"], responses=ERRORS)
Name = Annotated[str, Path(pattern=DATASET_NAME, description="dataset name")]

_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "One page of the answer: JSON rows, GeoJSON features or an Arrow IPC "
        "stream (headers X-Total-Count, X-Next-Offset, X-Masked-Columns)",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/QueryPage"}},
            GEOJSON: {"schema": {"$ref": "#/components/schemas/FeatureCollection"}},
            ARROW: {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


async def page_params(  # async: no I/O, so no thread-pool hop
    format: Annotated[
        Literal["json", "geojson", "arrow"] | None,
        Query(description="default: JSON, or Arrow if Accept asks for it"),
    ] = None,
    offset: Annotated[int, Query(ge=0, le=2**40)] = 0,
    limit: Annotated[
        int | None, Query(ge=1, le=ARROW_MAX, description="rows per page (JSON: at most 1000)")
    ] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> dict[str, Any]:
    return {"fmt": format, "offset": offset, "limit": limit, "accept": accept}


Page = Annotated[dict[str, Any], Depends(page_params)]


def _public(store: access.SecureStore, info: Any) -> DatasetPublic:
    pol = access.load_policy(store.db).policy(info.name)
    dec = store.can_read(info.name)
    d = info.to_dict() if hasattr(info, "to_dict") else {}
    fields = [
        {"name": f.name, "type": f.type, "personal": f.personal, "unit": f.unit}
        for f in info.schema.fields
    ]
    return DatasetPublic(
        name=info.name,
        model=str(info.schema.model),
        description=info.description,
        rows=info.rows,
        files=info.files,
        bytes=info.bytes,
        t_min=d.get("t_min"),
        t_max=d.get("t_max"),
        bbox=list(info.bbox) if info.bbox else None,
        crs=info.schema.crs,
        fields=fields,
        classification=pol.classification.value,
        owner_department=pol.owner_department,
        masked_fields=[
            f.name for f in info.schema.fields if f.personal and not dec.shows(f.personal)
        ],
    )


@router.get("", response_model=list[DatasetPublic])
def list_datasets(store: StoreDep) -> list[DatasetPublic]:
    """The datasets you may read."""
    return [_public(store, d) for d in store.list_datasets()]


@router.get("/{name}", response_model=DatasetPublic)
def describe(store: StoreDep, name: Name) -> DatasetPublic:
    """Schema, size, extent, classification and which fields you see masked."""
    return _public(store, store.describe(name))


def _answer(store: access.SecureStore, spec: Any, page: dict[str, Any]) -> Response:
    """Every query route: one spec through the one secured entry point, one page out."""
    return render(store.query(spec), **page)


@router.post("/{name}/query/range", responses=_ANSWER, response_model=QueryPage)
def query_range(store: StoreDep, name: Name, body: RangeQuery, page: Page) -> Response:
    """Spatial range: rows inside a bbox or geometry."""
    return _answer(store, body.to_spec(name), page)


@router.post("/{name}/query/st_range", responses=_ANSWER, response_model=QueryPage)
def query_st_range(store: StoreDep, name: Name, body: STRangeQuery, page: Page) -> Response:
    """Spatio-temporal range: rows inside the area with ``start <= t < end``."""
    return _answer(store, body.to_spec(name), page)


@router.post("/{name}/query/id_temporal", responses=_ANSWER, response_model=QueryPage)
def query_id_temporal(store: StoreDep, name: Name, body: IdTemporalQuery, page: Page) -> Response:
    """Every row of the given object ids in the time window (ids are converted to the
    dataset's id type where that is exact: ``7`` and ``"7"`` name the same object)."""
    return _answer(store, body.to_spec(name), page)


@router.post("/{name}/query/knn", responses=_ANSWER, response_model=QueryPage)
def query_knn(store: StoreDep, name: Name, body: KnnQuery, page: Page) -> Response:
    """The k nearest points (adds ``distance_m``)."""
    return _answer(store, body.to_spec(name), page)


@router.post("/{name}/query/knn_trajectories", responses=_ANSWER, response_model=QueryPage)
def query_knn_trajectories(store: StoreDep, name: Name, body: KnnQuery, page: Page) -> Response:
    """The k objects passing nearest to a point."""
    return _answer(store, body.to_spec(name, trajectories=True), page)


@router.post("/{name}/query/similar", responses=_ANSWER, response_model=QueryPage)
def query_similar(store: StoreDep, name: Name, body: SimilarQuery, page: Page) -> Response:
    """The k objects whose trajectories are most similar (DTW or Fréchet)."""
    return _answer(store, body.to_spec(name), page)


@router.post("/{name}/query/join_regions", responses=_ANSWER, response_model=QueryPage)
def query_join_regions(store: StoreDep, name: Name, body: JoinRegionsQuery, page: Page) -> Response:
    """Points with the id of the region containing them (needs read on both; each
    dataset's row filters apply)."""
    return _answer(store, body.to_spec(name), page)


@router.post("/{name}/query/join_nearest", responses=_ANSWER, response_model=QueryPage)
def query_join_nearest(store: StoreDep, name: Name, body: JoinNearestQuery, page: Page) -> Response:
    """Points with the nearest edge within ``max_distance_m`` (needs read on both; each
    dataset's row filters apply)."""
    return _answer(store, body.to_spec(name), page)


@router.post("/{name}/query/aggregate", responses=_ANSWER, response_model=QueryPage)
def query_aggregate(store: StoreDep, name: Name, body: AggregateQuery, page: Page) -> Response:
    """Counts and sum/mean/min/max of columns per grid cell or region and time bin, e.g.
    ``{"grid": {"bbox": [...], "cell_m": 1000}, "aggs": {"n": "count", "speed": "mean"}}``."""
    return _answer(store, body.to_spec(name), page)


@router.post("/{name}/records", response_model=WriteResultPublic)
def append_records(
    city: CityDep, store: StoreDep, name: Name, body: WriteRecords
) -> WriteResultPublic:
    """Push records through the dataset's ingest mapping (the one write path): needs a
    write grant; JSON types are checked strictly (a wrong type refuses the batch with 422);
    records breaking the schema are dead-lettered and listed; answers once the rest are
    durable; idempotent by record key; audited with the catalog commit."""
    from cityos.ingest import push_records

    store.require_write(name, "append")
    source = f"http:{body.source}" if body.source else f"http:{store.principal.username}"
    with store.acting():
        res = push_records(city.store, name, body.records, source=source)
    return WriteResultPublic(
        rows_in=res.received,
        rows_written=res.accepted,
        duplicates=res.duplicates,
        rejected=res.rejected,
        problems=[PushProblem(**p) for p in res.problems],
    )


__all__ = ["FeatureCollection", "router"]
