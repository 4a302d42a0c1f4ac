"""Intake: validated, idempotent, audited, stored relationally and in the ``events``
dataset; bad input names the field and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from cityos.access import read_audit, verify_audit
from cityos.govern import IdempotencyConflict, IntakeError, OutsideJurisdiction
from cityos.govern._tables import EventRow, ReportRow, TransitionRow

from .conftest import GovCity


def counts(c: GovCity) -> tuple[int, int, int, int, int]:
    with c.db.session() as s:
        e = s.scalar(select(func.count()).select_from(EventRow))
        r = s.scalar(select(func.count()).select_from(ReportRow))
        t = s.scalar(select(func.count()).select_from(TransitionRow))
    rows = (
        c.store.describe("events").rows
        if "events" in {d.name for d in c.store.list_datasets()}
        else 0
    )
    return int(e or 0), int(r or 0), int(t or 0), rows, len(read_audit(c.db))


def test_intake_creates_event_in_db_and_store(gcity: GovCity) -> None:
    res = gcity.gov.intake(
        "pothole",
        x=0.2,
        y=0.2,
        description="deep hole",
        attributes={"severity": "2"},
        reporter="ann",
        contact={"email": "ann@example.org"},
        channel="open311",
    )
    e = res.event
    assert res.created and e.id == "E-000001" and e.status == "received"
    assert (e.district, e.unit) == ("d1", "d1-s1-g1")
    assert e.due_at is not None and (e.due_at - e.received_at).total_seconds() == 1800
    assert (e.resolve_by - e.received_at).days == 2  # type: ignore[operator]
    tbl = gcity.store.read("events").table.to_pylist()
    assert len(tbl) == 1 and tbl[0]["id"] == "E-000001" and tbl[0]["status"] == "received"
    assert tbl[0]["service_code"] == "pothole" and abs(tbl[0]["x"] - 0.2) < 1e-6
    rep = gcity.gov.reports(e.id)
    assert [r.reporter for r in rep] == ["ann"] and rep[0].contact == {"email": "ann@example.org"}
    assert verify_audit(gcity.db).ok
    assert any(a.action == "govern.intake" for a in read_audit(gcity.db))


def test_idempotency_key_and_source_id(gcity: GovCity) -> None:
    g = gcity.gov
    a = g.intake("garbage", x=0.3, y=0.3, description="bins full", idempotency_key="k-1")
    b = g.intake("garbage", x=0.3, y=0.3, description="bins full", idempotency_key="k-1")
    assert (
        a.created
        and not b.created
        and a.event.id == b.event.id
        and a.report.token == b.report.token
    )
    before = counts(gcity)
    with pytest.raises(IdempotencyConflict, match="k-1"):
        g.intake("garbage", x=0.3, y=0.3, description="something else", idempotency_key="k-1")
    assert counts(gcity) == before
    s1 = g.intake("garbage", x=0.4, y=0.4, channel="hotline", source_id="call-77")
    s2 = g.intake(
        "garbage", x=0.4, y=0.4, channel="hotline", source_id="call-77", description="re-sent"
    )
    assert not s2.created and s1.event.id == s2.event.id
    assert counts(gcity)[0] == 2 and gcity.store.describe("events").rows == 2


BAD: list[tuple[dict[str, Any], str, type[Exception]]] = [
    ({"service_code": "nosuch", "x": 0.1, "y": 0.1}, "service_code", IntakeError),
    ({"service_code": "garbage", "x": 5.0, "y": 0.5}, "lat", OutsideJurisdiction),
    ({"service_code": "garbage", "x": None, "y": 0.5}, "long", IntakeError),
    ({"service_code": "garbage", "x": 0.5, "y": 95.0}, "lat", IntakeError),
    ({"service_code": "pothole", "x": 0.5, "y": 0.5}, "attribute[severity]", IntakeError),
    (
        {"service_code": "pothole", "x": 0.5, "y": 0.5, "attributes": {"severity": "9"}},
        "attribute[severity]",
        IntakeError,
    ),
    (
        {
            "service_code": "pothole",
            "x": 0.5,
            "y": 0.5,
            "attributes": {"severity": "1", "depth_cm": "deep"},
        },
        "attribute[depth_cm]",
        IntakeError,
    ),
    (
        {
            "service_code": "pothole",
            "x": 0.5,
            "y": 0.5,
            "attributes": {"severity": "1", "colour": "red"},
        },
        "attribute[colour]",
        IntakeError,
    ),
    (
        {"service_code": "garbage", "x": 0.5, "y": 0.5, "contact": {"email": "not-an-email"}},
        "email",
        IntakeError,
    ),
    (
        {"service_code": "garbage", "x": 0.5, "y": 0.5, "media_url": "ftp://x"},
        "media_url",
        IntakeError,
    ),
    ({"service_code": "garbage", "x": 0.5, "y": 0.5, "priority": 9}, "priority", IntakeError),
    ({"service_code": "garbage", "x": 0.5, "y": 0.5, "channel": "pigeon"}, "channel", IntakeError),
]


def test_bad_intake_names_field_and_changes_nothing(gcity: GovCity) -> None:
    gcity.gov.intake("garbage", x=0.3, y=0.3)
    before = counts(gcity)
    for case, field, exc in BAD:
        kwargs = dict(case)
        code = kwargs.pop("service_code")
        with pytest.raises(exc) as info:
            gcity.gov.intake(code, **kwargs)
        assert getattr(info.value, "field", None) == field, case
        assert field.split("[")[0] in str(info.value)
        assert counts(gcity) == before
