"""The AI engine's REST routes (mounted by :mod:`cityos.server`): list and describe
registered models, and ``POST /ai/models/{name}/predict`` — either the model's real inputs
or "forecast from the freshest data in the store". Every route authenticates the caller,
authorises read on each dataset the model reads (through :class:`cityos.access.SecureStore`)
and writes an audit entry for each prediction."""

# no `from __future__ import annotations`: FastAPI reads the annotations at runtime

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from cityos import access
from cityos.ai._errors import AIError, NotFittedError, VersionNotFound
from cityos.ai._lifecycle import predict_fresh, predict_inputs
from cityos.ai._registry import ModelRegistry, ModelVersion
from cityos.server._errors import ERRORS
from cityos.server.deps import StoreDep

__all__ = ["PredictBody", "router"]

router = APIRouter(prefix="/ai", tags=["ai"], responses=ERRORS)
ModelName = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_-]{0,99}$", description="model name")]


class PredictInputs(BaseModel):
    """The model's real inputs: the recent window of every node and channel."""

    values: list[list[list[float | None]]] = Field(
        description="(steps, nodes, channels) in the model's node and channel order; null = missing",
        max_length=20_000,
    )
    start: datetime = Field(description="time of the first step")


class PredictBody(BaseModel):
    version: int | str | None = Field(
        None, description="a number, 'latest' or a stage; default production"
    )
    horizon: int | None = Field(
        None, ge=1, le=10_000, description="steps ahead (default: the model's)"
    )
    ids: list[str] | None = Field(None, max_length=100_000, description="only these places")
    at: datetime | None = Field(
        None, description="fresh mode: forecast as of this time (default: latest data)"
    )
    inputs: PredictInputs | None = Field(
        None, description="omit to forecast fresh data from the store"
    )


class Prediction(BaseModel):
    id: str
    t: datetime
    horizon: int
    yhat: float
    lower: float | None
    upper: float | None


class PredictAnswer(BaseModel):
    model: str
    version: int
    family: str
    mode: str
    issued_at: datetime
    predictions: list[Prediction]


def _status(exc: AIError) -> int:
    if isinstance(exc, VersionNotFound):
        return 404
    if isinstance(exc, NotFittedError):
        return 409
    return 422


def _readable(store: access.SecureStore, v: ModelVersion) -> None:
    for ds in v.datasets or {v.feature_spec.get("dataset", ""): 0}:
        store.describe(ds)  # PermissionDenied (403) unless the caller may read it


def _summary(v: ModelVersion) -> dict[str, Any]:
    d = v.to_dict()
    d.pop("artefact", None)
    return d


@router.get("/models")
def list_models(store: StoreDep) -> list[dict[str, Any]]:
    """Registered models (production version, else latest) whose datasets you may read."""
    reg = ModelRegistry.of(store)
    out = []
    for v in reg.list_models():
        if all(store.can_read(ds).allowed for ds in v.datasets):
            out.append(_summary(v))
    return out


@router.get("/models/{name}")
def describe_model(store: StoreDep, name: ModelName) -> dict[str, Any]:
    """Every version of a model with metrics per horizon and its stage history."""
    reg = ModelRegistry.of(store)
    try:
        cur = reg.get(name)
    except AIError as exc:
        raise HTTPException(_status(exc), str(exc)) from exc
    _readable(store, cur)
    return {
        "name": name,
        "current": _summary(cur),
        "versions": [_summary(v) for v in reg.versions(name)],
        "stages": reg.stage_history(name),
    }


def _predict(store: access.SecureStore, name: str, body: PredictBody) -> PredictAnswer:
    reg = ModelRegistry.of(store)
    try:
        v = reg.get(name, body.version)
        _readable(store, v)
        if body.inputs is not None:
            df = predict_inputs(
                reg,
                name,
                body.inputs.values,
                body.inputs.start,
                v.version,
                horizon=body.horizon,
                ids=body.ids,
            )
            mode = "inputs"
        else:
            df = predict_fresh(
                store, name, v.version, at=body.at, ids=body.ids, horizon=body.horizon, registry=reg
            )
            mode = "fresh"
    except AIError as exc:
        raise HTTPException(_status(exc), str(exc)) from exc
    for ds in v.datasets:
        access.record(
            store.db,
            actor=store.principal.username,
            action="ai.predict",
            dataset=ds,
            detail={"model": name, "version": v.version, "mode": mode, "rows": len(df)},
        )
    rows = df[["id", "t", "horizon", "yhat", "lower", "upper"]]
    preds = [
        Prediction(
            id=r.id,  # type: ignore[arg-type]  # pandas-stubs type row fields loosely
            t=r.t,  # type: ignore[arg-type]
            horizon=int(r.horizon),  # type: ignore[arg-type]
            yhat=float(r.yhat),  # type: ignore[arg-type]
            lower=_opt_float(r.lower),
            upper=_opt_float(r.upper),
        )
        for r in rows.itertuples(index=False)
    ]
    return PredictAnswer(
        model=name,
        version=v.version,
        family=v.family,
        mode=mode,
        issued_at=df["issued_at"].iloc[0],
        predictions=preds,
    )


@router.post("/models/{name}/predict", response_model=PredictAnswer)
async def predict(store: StoreDep, name: ModelName, body: PredictBody) -> PredictAnswer:
    """Forecast with a registered version: from ``inputs`` (the model's real inputs), or
    from the freshest data in the store when ``inputs`` is omitted."""
    return await run_in_threadpool(_predict, store, name, body)


def _opt_float(v: Any) -> float | None:
    """A band value, or None where it is missing (NaN)."""
    f = float(v)
    return None if f != f else f
