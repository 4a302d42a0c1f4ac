"""The demo's story mechanism: a :class:`Chapter` per layer, run in order on one shared
:class:`DemoContext`, each adding its tables, timings and notes to the :class:`DemoReport`.

A layer's chapter lives in its own module of :mod:`cityos.demo` and is listed once in
``CHAPTERS`` (``cityos/demo/__init__.py``); the base class owns the loop and the printing.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

__all__ = ["Chapter", "DemoContext", "DemoReport", "Section", "run_story", "timed"]


@dataclass
class Section:
    """A printable table of one chapter: a title, column names and rows of strings."""

    title: str
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]] = field(default_factory=list)


@dataclass
class DemoReport:
    """What the demo built and measured, chapter by chapter."""

    home: Path
    datasets: dict[str, int] = field(default_factory=dict)
    timings: list[tuple[str, int, float]] = field(default_factory=list)  # (what, rows, ms)
    notes: list[str] = field(default_factory=list)
    analytics: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    #: figures a later chapter or a test reads back, by name (e.g. ``"dedup.precision"``)
    figures: dict[str, float] = field(default_factory=dict)
    chapters: list[tuple[str, float]] = field(default_factory=list)  # (title, seconds)


def timed(report: DemoReport, what: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn``, record ``(what, rows, ms)`` in ``report.timings`` and return its result."""
    t0 = time.perf_counter()
    out = fn()
    ms = (time.perf_counter() - t0) * 1000
    rows = len(out) if hasattr(out, "__len__") else int(getattr(out, "rows_written", out))
    report.timings.append((what, rows, ms))
    return out


@dataclass
class DemoContext:
    """Everything the chapters share: options, the open store, the synthetic city, the report.

    Chapters may leave objects for later ones in ``state`` (for example the governance
    chapter's service, which the twin chapter serves).
    """

    home: Path
    report: DemoReport
    vehicles: int = 300
    days: int = 2
    shared_data: Path | None = None
    fresh: bool = True
    serve: bool = False
    log: Callable[[str], None] = print
    store: Any = None
    city: Any = None
    state: dict[str, Any] = field(default_factory=dict)

    def require_store(self) -> Any:
        """The store opened by the first chapter (an error if no chapter opened one)."""
        if self.store is None:
            raise RuntimeError("no store yet: the Sense chapter must run first")
        return self.store


class Chapter(ABC):
    """One chapter of the city story. Subclasses set :attr:`title` and write :meth:`run`."""

    title: ClassVar[str] = ""

    @abstractmethod
    def run(self, ctx: DemoContext) -> None:
        """Do this chapter's work on ``ctx``, adding to ``ctx.report``."""


def run_story(chapters: Sequence[type[Chapter]], ctx: DemoContext) -> DemoReport:
    """Run ``chapters`` in order on ``ctx``, timing each; returns the report."""
    for n, cls in enumerate(chapters, 1):
        ctx.log(f"chapter {n}: {cls.title}")
        t0 = time.perf_counter()
        cls().run(ctx)
        ctx.report.chapters.append((cls.title, time.perf_counter() - t0))
    return ctx.report
