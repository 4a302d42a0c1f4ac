"""Group commit: concurrent callers' jobs run together, each caller still waiting for its own.

A caller :meth:`GroupCommit.submit`\\ s its jobs and blocks until every one of them is done.
The first caller to find no group running becomes the *leader*: it takes what is queued
(at most ``max_size`` jobs; it waits up to ``wait_s`` for more while other callers are still
preparing theirs, see :meth:`GroupCommit.preparing`), runs them with one call of ``run`` and
marks them done. If more jobs arrived meanwhile it hands the lead to the owner of the oldest
one, so no caller waits longer than its own group and the one before it. No thread is started:
leaders are the callers themselves.

``run`` sets each job's ``result`` or ``error``; an exception escaping ``run`` becomes the error
of every job of that group that has neither.

>>> g = GroupCommit(lambda jobs: [setattr(j, "result", j.value * 2) for j in jobs])
>>> [j.result for j in g.submit([Job(1), Job(2)])]
[2, 4]
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = ["GroupCommit", "Job"]


class _Ticket:
    """One caller's wait: woken when all its jobs are done or when it is to lead."""

    __slots__ = ("lead", "remaining", "wake")

    def __init__(self, n: int) -> None:
        self.remaining = n
        self.lead = False
        self.wake = threading.Event()


class Job:
    """A unit of work with its outcome (``result`` or ``error``)."""

    __slots__ = ("_ticket", "error", "result", "value")

    def __init__(self, value: Any = None) -> None:
        self.value = value
        self.result: Any = None
        self.error: BaseException | None = None
        self._ticket: _Ticket | None = None


class GroupCommit:
    """Runs concurrently submitted jobs in groups (see the module docstring).

    Parameters
    ----------
    run:
        Called with each group's jobs (in submission order); sets their outcomes.
    max_size:
        Largest group.
    wait_s:
        How long a leader waits for callers that are still preparing a job.
    """

    def __init__(
        self,
        run: Callable[[list[Any]], Any],
        *,
        max_size: int = 64,
        wait_s: float = 0.002,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._run = run
        self.max_size = max_size
        self.wait_s = wait_s
        self._cond = threading.Condition()
        self._queue: list[Job] = []
        self._leading = False
        self._preparing = 0
        #: sizes of the groups run so far (the last 1000), for benchmarks and tests
        self.group_sizes: deque[int] = deque(maxlen=1000)

    @contextmanager
    def preparing(self) -> Iterator[None]:
        """Mark a caller preparing a job: a leader waits (up to ``wait_s``) for it."""
        with self._cond:
            self._preparing += 1
        try:
            yield
        finally:
            with self._cond:
                self._preparing -= 1
                self._cond.notify_all()

    def submit(self, jobs: Sequence[Job]) -> Sequence[Job]:
        """Queue ``jobs`` and return them once each has its outcome."""
        if not jobs:
            return jobs
        ticket = _Ticket(len(jobs))
        for j in jobs:
            j._ticket = ticket
        with self._cond:
            self._queue.extend(jobs)
            lead = not self._leading
            if lead:
                self._leading = True
            else:
                self._cond.notify_all()
        if lead:
            self._lead()
        while True:
            ticket.wake.wait()
            with self._cond:
                if ticket.remaining == 0:
                    return jobs
                ticket.wake.clear()
                lead, ticket.lead = ticket.lead, False
            if lead:
                self._lead()

    def _lead(self) -> None:
        with self._cond:
            deadline = time.monotonic() + self.wait_s
            while len(self._queue) < self.max_size and self._preparing > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            group = self._queue[: self.max_size]
            del self._queue[: self.max_size]
        try:
            self._run(group)
        except BaseException as exc:  # every job learns why its group failed
            for j in group:
                if j.error is None and j.result is None:
                    j.error = exc
        finally:
            with self._cond:
                self.group_sizes.append(len(group))
                for j in group:
                    t = j._ticket
                    assert t is not None
                    t.remaining -= 1
                    if t.remaining == 0:
                        t.wake.set()
                if self._queue:  # the oldest waiting caller leads the next group
                    nxt = self._queue[0]._ticket
                    assert nxt is not None
                    nxt.lead = True
                    nxt.wake.set()
                else:
                    self._leading = False
