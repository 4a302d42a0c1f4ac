"""Helpers shared by the benchmark scripts: timing, tables and result files."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def median_ms(
    fn: Callable[[Any], Any], args: list[Any], warmup: int = 1
) -> tuple[float, list[Any]]:
    """Median latency in ms of ``fn`` over ``args`` (after ``warmup`` untimed calls), and the answers."""
    for a in args[:warmup]:
        fn(a)
    times, answers = [], []
    for a in args:
        t0 = time.perf_counter()
        answers.append(fn(a))
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), answers


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for j, r in enumerate(cells):
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if j == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return "-" if v is None else str(v)


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    p = RESULTS / f"{name}.json"
    p.write_text(json.dumps(data, indent=2, default=str))
    return p
