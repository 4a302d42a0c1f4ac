"""行政问效 (evaluation) and 分析研判 (analysis): on-time rates that count open overdue
work, handling-time percentiles, reopen rates and satisfaction per department, level or
district; hot spots by grid or region and time bin through the store's aggregation;
trends and breakdowns.

Imported history (``dispatch_mode == "imported"``, see :mod:`cityos.govern._bulk`) keeps
its own clock: a request still open in its export is judged at the export's time, not
today's, and the KPI counts it apart from live intake."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from cityos.govern._model import Event

if TYPE_CHECKING:
    from cityos.govern._core import Governance

__all__ = ["breakdown", "evaluate", "hotspots", "is_history", "kpi", "trends"]

_GROUPS = ("department", "level", "district", "service", "source")
_SCOPES = ("all", "live", "history")


def is_history(e: Event) -> bool:
    """Whether ``e`` is imported history (judged by its own dates, not the live timer)."""
    return e.dispatch_mode == "imported"


def _source(e: Event) -> str:
    if not is_history(e):
        return "live"
    return "history:" + (e.source_id or "").split(":")[0]


def _judged_at(e: Event, now: datetime) -> datetime:
    """When an open event's deadline is judged: now, or for history its export's time."""
    return e.updated_at if is_history(e) else now


def _key(e: Event, level: str) -> str | None:
    if level == "department":
        return e.department
    if level == "level":
        return e.level
    if level == "district":
        return e.district
    if level == "source":
        return _source(e)
    return e.service_code


def _figures(evs: list[Event], now: datetime, min_sample: int) -> dict[str, Any]:
    resolved = [e for e in evs if e.resolved_at is not None]
    on_time = [e for e in resolved if e.resolve_by is None or e.resolved_at <= e.resolve_by]  # type: ignore[operator]
    open_overdue = [
        e
        for e in evs
        if e.resolved_at is None and e.resolve_by is not None and e.resolve_by < _judged_at(e, now)
    ]
    judged = len(resolved) + len(open_overdue)
    hours = np.array([(e.resolved_at - e.received_at).total_seconds() / 3600 for e in resolved])  # type: ignore[operator]
    ever_resolved = [e for e in evs if e.resolved_at is not None or e.reopens > 0]
    sat = [e.satisfaction for e in evs if e.satisfaction is not None]
    small = judged < min_sample
    return {
        "events": len(evs),
        "resolved": len(resolved),
        "on_time": len(on_time),
        "open_overdue": len(open_overdue),
        "on_time_rate": len(on_time) / judged if judged else None,
        "handling_h_p50": float(np.percentile(hours, 50)) if len(hours) else None,
        "handling_h_p90": float(np.percentile(hours, 90)) if len(hours) else None,
        "reopen_rate": (sum(1 for e in ever_resolved if e.reopens > 0) / len(ever_resolved))
        if ever_resolved
        else None,
        "satisfaction": float(np.mean(sat)) if sat else None,
        "feedback": len(sat),
        "small_sample": small,
        "note": (
            f"only {judged} judged events (fewer than {min_sample}): too few to judge"
            if small
            else ""
        ),
    }


def evaluate(
    gov: Governance,
    level: str = "department",
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    min_sample: int = 20,
    scope: str = "all",
) -> list[dict[str, Any]]:
    """One row per department (``level="department"``), administrative level
    (``"level"``), district (``"district"``), service (``"service"``) or source
    (``"source"``: live intake, or each imported history) over the events received in
    [start, end), merged duplicates left out; ``scope`` keeps ``"live"`` events or
    imported ``"history"`` only.

    ``on_time_rate`` = resolved by the deadline / (resolved + open past the deadline):
    open overdue work counts against the rate, open work not yet due is not judged.
    ``small_sample`` (and ``note``) flag a group with fewer than ``min_sample`` judged
    events.
    """
    if level not in _GROUPS:
        from cityos.govern.errors import IntakeError

        raise IntakeError(f"level: {level!r} is not one of {', '.join(_GROUPS)}", field="level")
    if scope not in _SCOPES:
        from cityos.govern.errors import IntakeError

        raise IntakeError(f"scope: {scope!r} is not one of {', '.join(_SCOPES)}", field="scope")
    now = gov.now()
    evs = gov.events(start=start, end=end, include_merged=False, limit=None)
    if scope != "all":
        evs = [e for e in evs if is_history(e) == (scope == "history")]
    groups: dict[str, list[Event]] = defaultdict(list)
    for e in evs:
        k = _key(e, level)
        if k is not None:
            groups[k].append(e)
    rows = [{level: k, **_figures(v, now, min_sample)} for k, v in sorted(groups.items())]
    rows.append({level: "(all)", **_figures(evs, now, min_sample)})
    return rows


def kpi(gov: Governance) -> dict[str, Any]:
    """The dashboard's headline figures, for live intake: events today, open events,
    overdue work (past its step or resolution deadline), open warnings, the on-time rate.
    Imported history is counted apart under ``history`` (events, open and overdue as of
    their export, on-time rate), so a years-old export never shows as today's overdue
    work, and no live overdue event is hidden by it."""
    now = gov.now()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    evs = gov.events(include_merged=False, limit=None)
    live = [e for e in evs if not is_history(e)]
    hist = [e for e in evs if is_history(e)]
    open_evs = [e for e in live if e.is_open]
    overall = _figures(live, now, 1)
    old = _figures(hist, now, 1)
    return {
        "events_today": sum(1 for e in live if e.received_at >= midnight),
        "open_events": len(open_evs),
        "overdue": sum(
            1 for e in open_evs if e.overdue or (e.due_at is not None and e.due_at < now)
        ),
        "open_warnings": len(gov.warnings(status=["open", "acknowledged"])),
        "on_time_rate": overall["on_time_rate"],
        "at": now.isoformat(),
        "history": {
            "events": len(hist),
            "open_at_export": sum(1 for e in hist if e.is_open),
            "overdue_at_export": old["open_overdue"],
            "on_time_rate": old["on_time_rate"],
            "sources": sorted({_source(e)[len("history:") :] for e in hist}),
        },
    }


def hotspots(
    store: Any,
    *,
    cell_m: float = 500.0,
    start: Any = None,
    end: Any = None,
    time_bin: str | None = "1D",
    regions: str | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    top: int = 50,
) -> list[dict[str, Any]]:
    """Event counts per grid cell (about ``cell_m`` metres) or per region of the
    ``regions`` dataset, per time bin, through the store's aggregation over ``events``;
    the ``top`` busiest first."""
    from cityos.store import Grid

    if regions is None:
        if bbox is None:
            info = store.describe("events")
            b = getattr(info, "bbox", None)
            bbox = (b[0], b[1], b[2], b[3]) if b else (-180.0, -90.0, 180.0, 90.0)
        assert bbox is not None
        res = store.aggregate(
            "events",
            grid=Grid.from_metres(bbox, cell_m),
            time_bin=time_bin,
            aggs={"n": "count"},
            start=start,
            end=end,
        )
    else:
        res = store.aggregate(
            "events", regions=regions, time_bin=time_bin, aggs={"n": "count"}, start=start, end=end
        )
    rows = res.to_arrow().to_pylist()
    rows.sort(key=lambda r: (-int(r["n"]), str(r["id"])))
    return [
        {"cell": str(r["id"]), "t": r.get("t"), "x": r.get("x"), "y": r.get("y"), "n": int(r["n"])}
        for r in rows[:top]
    ]


def breakdown(
    gov: Governance,
    by: str = "category",
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[dict[str, Any]]:
    """Counts of events (open, overdue, resolved) per category, department, service,
    status, channel or district."""
    fields = ("category", "department", "service_code", "status", "channel", "district", "level")
    if by not in fields:
        from cityos.govern.errors import IntakeError

        raise IntakeError(f"by: {by!r} is not one of {', '.join(fields)}", field="by")
    counts: dict[str, dict[str, int]] = defaultdict(
        lambda: {"events": 0, "open": 0, "overdue": 0, "resolved": 0}
    )
    for e in gov.events(start=start, end=end, include_merged=False, limit=None):
        c = counts[str(getattr(e, by))]
        c["events"] += 1
        c["open"] += e.is_open
        c["overdue"] += e.overdue
        c["resolved"] += e.resolved_at is not None
    return [{by: k, **v} for k, v in sorted(counts.items(), key=lambda kv: -kv[1]["events"])]


def trends(
    gov: Governance,
    *,
    time_bin: str = "1D",
    start: datetime | None = None,
    end: datetime | None = None,
    by: str | None = None,
) -> list[dict[str, Any]]:
    """Events received per time bin (``1h``, ``1D``, ``7D``), optionally split ``by`` a
    field."""
    from cityos.govern._model import parse_duration

    step = parse_duration(time_bin, field="time_bin")
    sec = step.total_seconds()
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for e in gov.events(start=start, end=end, include_merged=False, limit=None):
        t0 = datetime.fromtimestamp(
            (e.received_at.timestamp() // sec) * sec, tz=e.received_at.tzinfo
        )
        counts[(t0.isoformat(), str(getattr(e, by)) if by else "")] += 1
    return [{"t": t, **({by: k} if by else {}), "n": n} for (t, k), n in sorted(counts.items())]


_ = timedelta
