"""A clock that moves only when told: exact deadline and timer tests.

>>> from datetime import datetime, timedelta, UTC
>>> c = FakeClock(datetime(2026, 3, 2, 8, tzinfo=UTC))
>>> c.advance(hours=2).isoformat()
'2026-03-02T10:00:00+00:00'
>>> c.now().hour
10
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

__all__ = ["FakeClock"]


class FakeClock:
    """``now()`` returns a settable, timezone-aware UTC instant (thread-safe)."""

    def __init__(self, start: datetime | str = "2026-03-02T08:00:00Z") -> None:
        self._lock = threading.Lock()
        self._now = _aware(start)

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime | str) -> datetime:
        with self._lock:
            self._now = _aware(when)
            return self._now

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move forward by ``delta`` or by ``timedelta(**kwargs)``; returns the new now."""
        step = delta if delta is not None else timedelta(**kwargs)
        if step < timedelta(0):
            raise ValueError("a clock does not run backwards")
        with self._lock:
            self._now = self._now + step
            return self._now


def _aware(when: datetime | str) -> datetime:
    if isinstance(when, str):
        when = datetime.fromisoformat(when.replace("Z", "+00:00"))
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
