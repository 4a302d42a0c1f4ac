"""Notifications: in-process subscribers (the SSE stream) and webhooks to departments.

A webhook is a real HTTP ``POST`` of JSON ``{"kind": ..., "event": {...}}`` to the
department's ``webhook_url`` whenever an event is assigned to it (dispatch, reassignment,
escalation) or reopened; every delivery and its answer is recorded."""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from cityos.db import Database, utcnow
from cityos.govern._tables import WebhookDeliveryRow

__all__ = ["Hub", "Webhooks"]

log = logging.getLogger("cityos.govern")

Listener = Callable[[str, dict[str, Any]], None]


class Hub:
    """Fan-out of governance changes to subscribers (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: list[Listener] = []

    def subscribe(self, fn: Listener) -> Callable[[], None]:
        with self._lock:
            self._subs.append(fn)

        def unsubscribe() -> None:
            with self._lock:
                if fn in self._subs:
                    self._subs.remove(fn)

        return unsubscribe

    @property
    def active(self) -> bool:
        """Whether anyone listens (a publisher may skip building the payload)."""
        return bool(self._subs)

    def publish(self, kind: str, payload: dict[str, Any]) -> None:
        with self._lock:
            subs = list(self._subs)
        for fn in subs:
            try:
                fn(kind, payload)
            except Exception:  # a broken subscriber never breaks the workflow
                log.exception("governance subscriber failed on %s", kind)


class Webhooks:
    """Posts assignments to the departments' webhook URLs on a small thread pool."""

    def __init__(self, db: Database, timeout_s: float = 5.0) -> None:
        self.db = db
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cityos-webhook")
        self._pending: list[Future[None]] = []
        self._lock = threading.Lock()

    def send(self, department: str, url: str, kind: str, event: dict[str, Any]) -> None:
        fut = self._pool.submit(self._post, department, url, kind, event)
        with self._lock:
            self._pending = [f for f in self._pending if not f.done()] + [fut]

    def _post(self, department: str, url: str, kind: str, event: dict[str, Any]) -> None:
        body = json.dumps({"kind": kind, "department": department, "event": event}).encode()
        req = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        code: int | None = None
        err: str | None = None
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                code = int(resp.status)
        except Exception as exc:  # recorded; delivery failures never stop the workflow
            err = f"{type(exc).__name__}: {exc}"[:2000]
            code = getattr(exc, "code", None)
        with self.db.session() as s:
            s.add(
                WebhookDeliveryRow(
                    department=department,
                    url=url,
                    kind=kind,
                    event_id=int(str(event.get("id", "E-0"))[2:] or 0),
                    status_code=code,
                    error=err,
                    at=utcnow(),
                )
            )

    def wait(self, timeout: float = 10.0) -> None:
        """Block until every delivery started so far has finished (tests, shutdown)."""
        with self._lock:
            pending = list(self._pending)
        for f in pending:
            f.result(timeout=timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
