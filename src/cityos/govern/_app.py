"""The governance service of a served city: one :class:`Governance` per app, created on
first use over the city's database and store (tests and the demo may install their own,
with a fake clock or govern-intel's hooks, as ``app.state.governance``)."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import Request

from cityos.govern._core import Governance

__all__ = ["governance"]

_lock = threading.Lock()


def governance(request: Request) -> Governance:
    state = request.app.state
    gov: Governance | None = getattr(state, "governance", None)
    if gov is None:
        with _lock:
            gov = getattr(state, "governance", None)
            if gov is None:
                city: Any = state.city
                # the store's events dataset follows within a second (write-behind)
                gov = Governance(city.db, city.store, mirror_every_s=1.0)
                state.governance = gov
                # the write-behind rows reach the store before the server exits
                request.app.router.add_event_handler("shutdown", gov.close)
    return gov
