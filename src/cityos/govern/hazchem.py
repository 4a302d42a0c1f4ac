"""Hazardous chemicals end to end (危化品全流程监管): abnormal stays of carriers, the
suspected-site list, and each enterprise's archive.

:class:`AbnormalStayDetector` is a detector (the governance rule protocol: ``detect(store,
start, end) -> pyarrow.Table``) over the carriers' GPS dataset: stay points (the analytics
layer's :func:`cityos.analytics.stay_points`) longer than ``min_minutes`` farther than
``site_radius_m`` from every enterprise holding a valid permit, or, at night, shorter
stays within ``site_radius_m`` of an enterprise without one. :func:`suspected_sites`
matches abnormal stays to enterprises without a permit: the list an inspector works
through, ranked by stays and minutes.

>>> import pandas as pd
>>> ents = pd.DataFrame({"id": ["A", "B"], "x": [116.40, 116.41], "y": [39.90, 39.90]})
>>> stays = pd.DataFrame({"x": [116.4101, 116.4102], "y": [39.9000, 39.9001], "observed": [40.0, 55.0]})
>>> suspected_sites(stays, ents, permitted=set(["A"]))["enterprise_id"].tolist()
['B']
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from cityos.govern.dedup import _hav

__all__ = [
    "AbnormalStayDetector",
    "SiteQuality",
    "enterprise_archive",
    "evaluate_sites",
    "load_world",
    "suspected_sites",
]


def _nearest(x: Any, y: Any, ex: Any, ey: Any) -> tuple[np.ndarray, np.ndarray]:
    """Index of and metres to the nearest of (ex, ey) for each (x, y)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ex = np.asarray(ex, dtype=np.float64)
    ey = np.asarray(ey, dtype=np.float64)
    if len(ex) == 0 or len(x) == 0:
        return np.full(len(x), -1), np.full(len(x), np.inf)
    d = _hav(x[:, None], y[:, None], ex[None, :], ey[None, :])
    k = np.argmin(d, axis=1)
    return k, d[np.arange(len(x)), k]


def _valid_permits(permits: pd.DataFrame, at: pd.Timestamp) -> set[str]:
    if permits.empty:
        return set()
    p = permits
    ok = np.ones(len(p), dtype=bool)
    if "valid_from" in p.columns:
        ok &= (pd.to_datetime(p["valid_from"], utc=True) <= at).to_numpy()
    if "valid_to" in p.columns:
        ok &= (pd.to_datetime(p["valid_to"], utc=True) >= at).to_numpy()
    return set(p.loc[ok, "enterprise_id"].astype(str))


class AbnormalStayDetector:
    """Abnormal stays of hazardous-chemical carriers (see the module docstring).

    Parameters
    ----------
    vehicles, enterprises, permits:
        Dataset names: the carriers' GPS points (POINT_ST), enterprises (id, x, y, ...),
        permits (enterprise_id, valid_from, valid_to).
    min_minutes:
        A stay this long outside every permitted site is abnormal.
    night, night_min_minutes, tz:
        Local hours ``(from, to)`` of the night; a night stay this long near an enterprise
        without a permit is abnormal.
    """

    kind = "abnormal_stay"

    def __init__(
        self,
        vehicles: str = "hazchem_gps",
        enterprises: str = "enterprises",
        permits: str = "permits",
        *,
        min_minutes: float = 30.0,
        stay_radius_m: float = 100.0,
        site_radius_m: float = 150.0,
        night: tuple[int, int] = (22, 5),
        night_min_minutes: float = 10.0,
        tz: str = "Asia/Shanghai",
        lookback: str = "4h",
    ) -> None:
        self.vehicles, self.enterprises, self.permits = vehicles, enterprises, permits
        self.min_minutes = float(min_minutes)
        self.stay_radius_m = float(stay_radius_m)
        self.site_radius_m = float(site_radius_m)
        self.night = (int(night[0]), int(night[1]))
        self.night_min_minutes = float(night_min_minutes)
        self.tz = tz
        self.lookback = pd.Timedelta(lookback)

    def stays(self, points: pd.DataFrame) -> pd.DataFrame:
        """Stay points of a GPS frame (id, t, x, y) of at least the shorter minimum."""
        from cityos.analytics import stay_points

        if points.empty:
            return pd.DataFrame(columns=["id", "t", "t_end", "x", "y", "duration_s"])
        m = min(self.min_minutes, self.night_min_minutes)
        return stay_points(
            points[["id", "t", "x", "y"]], self.stay_radius_m, f"{m}min", geographic=True
        )

    def classify(
        self,
        stays: pd.DataFrame,
        enterprises: pd.DataFrame,
        permits: pd.DataFrame,
        at: pd.Timestamp,
    ) -> pd.DataFrame:
        """The abnormal ones among ``stays``, with ``reason``, ``nearest_enterprise`` and
        ``nearest_m``."""
        if stays.empty:
            return stays.assign(reason=[], nearest_enterprise=[], nearest_m=[])
        ok_ids = _valid_permits(permits, at)
        ents = enterprises.reset_index(drop=True)
        perm = ents[ents["id"].astype(str).isin(ok_ids)]
        _, d_perm = _nearest(stays["x"], stays["y"], perm["x"], perm["y"])
        k_any, d_any = _nearest(stays["x"], stays["y"], ents["x"], ents["y"])
        minutes = stays["duration_s"].to_numpy(float) / 60.0
        long_out = (minutes >= self.min_minutes) & (d_perm > self.site_radius_m)
        unperm = ~ents["id"].astype(str).isin(ok_ids).to_numpy()
        near_unperm = np.array([k >= 0 and unperm[k] for k in k_any]) & (
            d_any <= self.site_radius_m
        )
        h0 = pd.to_datetime(stays["t"], utc=True).dt.tz_convert(self.tz).dt.hour.to_numpy()
        h1 = pd.to_datetime(stays["t_end"], utc=True).dt.tz_convert(self.tz).dt.hour.to_numpy()
        a, b = self.night
        at_night = ((h0 >= a) | (h0 < b)) | ((h1 >= a) | (h1 < b))
        night_hit = at_night & near_unperm & (minutes >= self.night_min_minutes)
        sel = long_out | night_hit
        out = stays[sel].copy()
        out["reason"] = np.where(
            night_hit[sel] & ~long_out[sel],
            "night_near_unregistered",
            "long_stay_outside_permitted",
        )
        out["nearest_enterprise"] = [str(ents["id"].iat[k]) if k >= 0 else "" for k in k_any[sel]]
        out["nearest_m"] = d_any[sel]
        out["minutes"] = minutes[sel]
        return out.reset_index(drop=True)

    def detect(self, store: Any, start: Any, end: Any) -> pa.Table:
        """Abnormal stays that end in ``[start, end)`` or are still going on at ``end``,
        as detections (id, t, x, y + the AI engine's detection fields + evidence)."""
        lo, hi = pd.Timestamp(start), pd.Timestamp(end)
        lo = lo.tz_localize("UTC") if lo.tzinfo is None else lo
        hi = hi.tz_localize("UTC") if hi.tzinfo is None else hi
        pts = store.sql(
            f"SELECT id, t, x, y FROM \"{self.vehicles}\" WHERE t >= TIMESTAMPTZ '{(lo - self.lookback).isoformat()}' "
            f"AND t < TIMESTAMPTZ '{hi.isoformat()}' ORDER BY id, t"
        ).to_pandas()
        ents = store.sql(f'SELECT * FROM "{self.enterprises}"').to_pandas()
        perms = store.sql(f'SELECT * FROM "{self.permits}"').to_pandas()
        st = self.stays(pts)
        if not st.empty:
            ends = pd.to_datetime(st["t_end"], utc=True)
            st = st[(ends >= lo) | (ends >= hi - pd.Timedelta(minutes=2))].reset_index(drop=True)
        ab = self.classify(st, ents, perms, hi)
        n = len(ab)
        t = pd.to_datetime(ab["t"], utc=True) if n else pd.Series([], dtype="datetime64[ms, UTC]")
        df = pd.DataFrame(
            {
                "id": [f"{v}@{_iso(ts)}" for v, ts in zip(ab["id"], t, strict=True)] if n else [],
                "t": t,
                "x": ab["x"].to_numpy(float) if n else [],
                "y": ab["y"].to_numpy(float) if n else [],
                "kind": self.kind,
                "source_dataset": self.vehicles,
                "place": [f"{v}@{_iso(ts)}" for v, ts in zip(ab["id"], t, strict=True)]
                if n
                else [],
                "window_start": t,
                "window_end": pd.to_datetime(ab["t_end"], utc=True) if n else t,
                "observed": ab["minutes"].to_numpy(float) if n else [],
                "expected": self.min_minutes,
                "lower": 0.0,
                "upper": self.min_minutes,
                "score": (ab["minutes"].to_numpy(float) / self.min_minutes) if n else [],
                "model": "",
                "model_version": "",
                "vehicle": ab["id"].astype(str).to_numpy() if n else [],
                "reason": ab["reason"].to_numpy() if n else [],
                "nearest_enterprise": ab["nearest_enterprise"].to_numpy() if n else [],
                "nearest_m": ab["nearest_m"].to_numpy(float) if n else [],
            }
        )
        return pa.Table.from_pandas(df, preserve_index=False)


def suspected_sites(
    stays: pd.DataFrame,
    enterprises: pd.DataFrame,
    *,
    permitted: Iterable[str] = (),
    radius_m: float = 150.0,
) -> pd.DataFrame:
    """Enterprises without a valid permit near which abnormal stays happened, ranked by
    number of stays then total minutes: ``enterprise_id``, ``name``, ``kind``, ``stays``,
    ``minutes``, ``vehicles``."""
    ents = enterprises.reset_index(drop=True)
    perm = set(permitted)
    cand = ents[~ents["id"].astype(str).isin(perm)].reset_index(drop=True)
    cols = ["enterprise_id", "name", "kind", "stays", "minutes", "vehicles"]
    if stays.empty or cand.empty:
        return pd.DataFrame(columns=cols)
    k, d = _nearest(stays["x"], stays["y"], cand["x"], cand["y"])
    hit = d <= radius_m
    minutes = (
        stays["observed"].to_numpy(float)
        if "observed" in stays.columns
        else stays.get("minutes", pd.Series(np.zeros(len(stays)))).to_numpy(float)
    )
    veh = (
        stays["vehicle"].astype(str).to_numpy()
        if "vehicle" in stays.columns
        else np.array([""] * len(stays))
    )
    rows: dict[int, dict[str, Any]] = {}
    for i in np.flatnonzero(hit):
        e = int(k[i])
        r = rows.setdefault(e, {"stays": 0, "minutes": 0.0, "vehicles": set()})
        r["stays"] += 1
        r["minutes"] += float(minutes[i])
        r["vehicles"].add(str(veh[i]))
    out = pd.DataFrame(
        [
            {
                "enterprise_id": str(cand["id"].iat[e]),
                "name": str(cand["name"].iat[e]) if "name" in cand.columns else "",
                "kind": str(cand["kind"].iat[e]) if "kind" in cand.columns else "",
                "stays": r["stays"],
                "minutes": round(r["minutes"], 1),
                "vehicles": ",".join(sorted(v for v in r["vehicles"] if v)),
            }
            for e, r in rows.items()
        ],
        columns=cols,
    )
    return out.sort_values(["stays", "minutes"], ascending=False, kind="stable").reset_index(
        drop=True
    )


@dataclass(frozen=True)
class SiteQuality:
    precision: float
    recall: float
    suspected: int
    correct: int
    truth: int


def evaluate_sites(suspected: pd.DataFrame, truth_sites: Iterable[str]) -> SiteQuality:
    """Precision and recall of a suspected-site list against the injected ground truth."""
    s = set(suspected["enterprise_id"].astype(str))
    t = set(truth_sites)
    c = len(s & t)
    return SiteQuality(c / len(s) if s else 1.0, c / len(t) if t else 1.0, len(s), c, len(t))


def load_world(store: Any, world: Any) -> dict[str, int]:
    """Write a :class:`cityos.synth._hazchem.HazchemWorld` into ``store`` as the datasets
    ``enterprises`` (POINT_STATIC), ``permits``, ``hazchem_vehicles`` (tables) and
    ``hazchem_gps`` (POINT_ST). Returns rows written per dataset."""
    from cityos.model import DatasetSchema, Field, ModelKind

    specs = {
        "enterprises": DatasetSchema(
            ModelKind.POINT_STATIC,
            fields=(Field("name"), Field("kind"), Field("registered", "bool")),
            description="Enterprises handling hazardous chemicals, registered or not",
        ),
        "permits": DatasetSchema(
            ModelKind.TABLE,
            fields=(
                Field("enterprise_id"),
                Field("kind"),
                Field("valid_from", "timestamp"),
                Field("valid_to", "timestamp"),
            ),
            description="Hazardous-chemical permits",
        ),
        "hazchem_vehicles": DatasetSchema(
            ModelKind.TABLE,
            fields=(Field("enterprise_id"), Field("plate")),
            description="Hazardous-chemical carriers and their owners",
        ),
        "hazchem_gps": DatasetSchema(
            ModelKind.POINT_ST,
            fields=(Field("speed_kmh", "float64"),),
            description="GPS feed of hazardous-chemical carriers",
        ),
    }
    data = {
        "enterprises": world.enterprises,
        "permits": world.permits,
        "hazchem_vehicles": world.vehicles,
        "hazchem_gps": world.points,
    }
    out: dict[str, int] = {}
    for name, schema in specs.items():
        store.create_dataset(name, schema, exist_ok=True)
        out[name] = int(store.append(name, data[name], source="cityos.synth").rows_written)
    return out


def enterprise_archive(
    store: Any, enterprise_id: str, gov: Any = None, *, radius_m: float = 150.0
) -> dict[str, Any]:
    """One enterprise's archive: the enterprise, its permits, its vehicles, the warnings
    that name it (or lie within ``radius_m``), events within ``radius_m`` and inspections
    (dataset ``inspections`` with ``enterprise_id``, when present).

    Raises ``KeyError`` naming the id when no enterprise has it."""
    names = {d.name for d in store.list_datasets()}

    def q(sql: str) -> list[dict[str, Any]]:
        return [{k: _plain(v) for k, v in r.items()} for r in store.sql(sql).to_pylist()]

    eid = enterprise_id.replace("'", "''")
    ent = q(f"SELECT * FROM enterprises WHERE id = '{eid}'") if "enterprises" in names else []
    if not ent:
        raise KeyError(f"no enterprise {enterprise_id!r}")
    e = ent[0]
    x, y = float(e["x"]), float(e["y"])

    def near(ds: str, extra: str = "") -> list[dict[str, Any]]:
        if ds not in names:
            return []
        return q(
            f'SELECT * FROM "{ds}" WHERE haversine_m(x, y, {x}, {y}) <= {radius_m} {extra} ORDER BY t DESC LIMIT 200'
        )

    warnings: list[dict[str, Any]] = []
    if gov is not None:
        for w in gov.warnings():
            ev = getattr(w, "evidence", {}) or {}
            if isinstance(ev, str):
                import json

                ev = json.loads(ev or "{}")
            if ev.get("nearest_enterprise") == enterprise_id or _hav(w.x, w.y, x, y) <= radius_m:
                warnings.append(
                    {
                        "id": w.id,
                        "rule": w.rule,
                        "severity": w.severity,
                        "status": w.status,
                        "t": _plain(getattr(w, "t", None)),
                        "evidence": ev,
                    }
                )
    else:
        warnings = near("warnings")
    return {
        "enterprise": e,
        "permits": q(f"SELECT * FROM permits WHERE enterprise_id = '{eid}'")
        if "permits" in names
        else [],
        "vehicles": q(f"SELECT * FROM hazchem_vehicles WHERE enterprise_id = '{eid}'")
        if "hazchem_vehicles" in names
        else [],
        "warnings": warnings,
        "events": near("events"),
        "inspections": q(f"SELECT * FROM inspections WHERE enterprise_id = '{eid}'")
        if "inspections" in names
        else [],
    }


def _iso(v: Any) -> str:
    return str(pd.Timestamp(v).isoformat())


def _plain(v: Any) -> Any:
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if isinstance(v, bytes):
        return None
    return v
