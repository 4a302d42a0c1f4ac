"""REST routes of governance intelligence (included by :mod:`cityos.govern.http`):
``GET /govern/search`` and ``GET /govern/enterprises/{id}`` (the enterprise archive).

Both run through the caller's :class:`cityos.access.SecureStore`: search reads every
document through it (no result from a dataset the caller may not read; row filters and
masking apply), and the archive needs read on ``enterprises`` and reads each linked dataset
only when the caller may read it (a section the caller may not read is left out and named
in ``withheld``). Each call is audited."""

# no `from __future__ import annotations`: FastAPI reads the annotations at runtime

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from cityos import access
from cityos.access import PermissionDenied
from cityos.server._errors import ERRORS
from cityos.server.deps import StoreDep

__all__ = ["router"]

router = APIRouter(prefix="/govern", tags=["govern"], responses=ERRORS)


def _bad(field: str, detail: str, code: int = 422) -> JSONResponse:
    return JSONResponse(
        {"detail": detail, "field": field, "error": "IntakeError"}, status_code=code
    )


@router.get("/search")
async def search(
    store: StoreDep,
    q: Annotated[str, Query(min_length=1, max_length=200, description="words, Chinese or English")],
    bbox: Annotated[str | None, Query(description="min_lon,min_lat,max_lon,max_lat")] = None,
    start: Annotated[str | None, Query(description="ISO time, inclusive")] = None,
    end: Annotated[str | None, Query(description="ISO time, exclusive")] = None,
    kinds: Annotated[str | None, Query(description="event,dataset,enterprise,place")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> Any:
    """One search across events, catalog datasets, enterprises and places."""
    import pandas as pd

    from cityos.govern.search import KINDS, Search

    box = None
    if bbox:
        try:
            v = [float(p) for p in bbox.split(",")]
        except ValueError:
            return _bad("bbox", f"bbox: {bbox!r} is not min_lon,min_lat,max_lon,max_lat")
        if len(v) != 4 or v[0] > v[2] or v[1] > v[3]:
            return _bad("bbox", f"bbox: {bbox!r} is not min_lon,min_lat,max_lon,max_lat")
        box = v
    for name, val in (("start", start), ("end", end)):
        if val is not None:
            try:
                pd.Timestamp(val)
            except ValueError:
                return _bad(name, f"{name}: {val!r} is not an ISO time")
    ks = tuple(k for k in (kinds or "").split(",") if k) or KINDS
    bad = sorted(set(ks) - set(KINDS))
    if bad:
        return _bad("kinds", f"kinds: {bad} are not among {list(KINDS)}")

    def run() -> dict[str, Any]:
        hits = Search(store).search(q, bbox=box, start=start, end=end, kinds=ks, limit=limit)
        access.record(
            store.db,
            actor=store.principal.username,
            action="govern.search",
            detail={"q": q, "hits": len(hits)},
        )
        return {"q": q, "hits": [h.to_dict() for h in hits]}

    return await run_in_threadpool(run)


@router.get("/enterprises/{enterprise_id}")
async def enterprise(store: StoreDep, enterprise_id: str) -> Any:
    """An enterprise's archive: permits, vehicles, warnings, events, inspections."""

    def run() -> Any:
        try:
            ent = store.scan("enterprises", ids=[enterprise_id]).table.to_pylist()
        except PermissionDenied as exc:
            return JSONResponse({"detail": str(exc), "error": "PermissionDenied"}, status_code=403)
        if not ent:
            return JSONResponse(
                {"detail": f"no enterprise {enterprise_id!r}", "error": "NotFound"}, status_code=404
            )
        out: dict[str, Any] = {
            "enterprise": {k: _plain(v) for k, v in ent[0].items() if k != "geometry"},
            "withheld": [],
        }
        x, y = float(ent[0]["x"]), float(ent[0]["y"])
        names = {d.name for d in store.list_datasets()}

        def rows(ds: str, key: str) -> list[dict[str, Any]]:
            if ds not in names:
                out["withheld"].append(ds) if _exists(store, ds) else None
                return []
            tbl = store.read(ds).table.to_pandas()
            if key not in tbl.columns:
                return []
            return [
                {k: _plain(v) for k, v in r.items() if k != "geometry"}
                for r in tbl[tbl[key].astype(str) == enterprise_id].to_dict("records")
            ]

        def near(ds: str, radius_m: float = 150.0) -> list[dict[str, Any]]:
            if ds not in names:
                out["withheld"].append(ds) if _exists(store, ds) else None
                return []
            from cityos.govern.dedup import _hav

            tbl = store.read(ds).table.to_pandas()
            if tbl.empty or "x" not in tbl.columns:
                return []
            sel = tbl[_hav(tbl["x"], tbl["y"], x, y) <= radius_m]
            return [
                {k: _plain(v) for k, v in r.items() if k != "geometry"}
                for r in sel.to_dict("records")
            ]

        out["permits"] = rows("permits", "enterprise_id")
        out["vehicles"] = rows("hazchem_vehicles", "enterprise_id")
        out["inspections"] = rows("inspections", "enterprise_id")
        out["warnings"] = near("warnings")
        out["events"] = near("events")
        access.record(
            store.db,
            actor=store.principal.username,
            action="govern.enterprise",
            dataset="enterprises",
            detail={"id": enterprise_id},
        )
        return out

    return await run_in_threadpool(run)


def _exists(store: Any, ds: str) -> bool:
    """Whether ``ds`` exists even though the caller may not read it (to say it is withheld)."""
    try:
        store.describe(ds)
    except PermissionDenied:
        return True
    except Exception:
        return False
    return False


def _plain(v: Any) -> Any:
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if isinstance(v, bytes):
        return None
    if isinstance(v, float) and v != v:
        return None
    return v
