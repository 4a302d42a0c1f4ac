"""Governance core: intake throughput and latency of ``Governance.intake`` (validation,
idempotency key, audit chain, relational write, store mirror), dedup and dispatch off,
on SQLite and PostgreSQL, in three store-mirroring modes measured in the same run:

- ``sync``: every intake writes its row to the store's ``events`` dataset (the baseline);
- ``write-behind``: a background writer flushes the gathered rows every second (what
  ``cityos serve`` uses);
- ``batch``: one store write at the end (bulk imports, the demo).

    PYTHONPATH=src python benchmarks/govern_intake.py [--n 300] [--pg URL]

govern-intel's ``benchmarks/govern.py`` measures intake with the intelligence on and off.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run(url_for: Any, n: int, mode: str) -> tuple[float, float, float]:
    from tests.govern.conftest import small_org

    from cityos.govern import Governance, load_organisation
    from cityos.store import Store

    home = Path(tempfile.mkdtemp())
    store = Store(home / "c", database_url=url_for(home))
    load_organisation(store.db, small_org())
    g = Governance(
        store.db, store, webhooks=False, mirror_every_s=1.0 if mode == "write-behind" else None
    )
    rng = np.random.default_rng(1)
    lat = []
    t0 = time.perf_counter()
    with g.batch() if mode == "batch" else nullcontext():
        for i in range(n):
            a = time.perf_counter()
            g.intake(
                "garbage",
                x=float(rng.uniform(0.01, 1.99)),
                y=float(rng.uniform(0.01, 0.99)),
                description="bins",
                source_id=f"s{i}",
                channel="hotline",
            )
            lat.append(time.perf_counter() - a)
    g.close()  # the store holds every event before the clock stops
    dt = time.perf_counter() - t0
    assert store.describe("events").rows == n
    store.close()
    ms = np.array(lat) * 1000
    return n / dt, float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument(
        "--pg", default=None, help="PostgreSQL URL (default: a throwaway local cluster)"
    )
    args = ap.parse_args()
    from contextlib import ExitStack

    from cityos.testing.postgres import fresh_database, postgres_server

    with ExitStack() as stack:
        pg = args.pg or stack.enter_context(postgres_server())
        dbs = {
            "SQLite": lambda h: f"sqlite:///{h / 'c.db'}",
            "PostgreSQL": lambda h: fresh_database(pg),
        }
        print("| database | mirror | intakes/s | p50 ms | p99 ms | × sync |")
        print("|---|---|---|---|---|---|")
        for name, url_for in dbs.items():
            base = None
            for mode in ("sync", "write-behind", "batch"):
                rate, p50, p99 = run(url_for, args.n, mode)
                base = base or rate
                print(
                    f"| {name} | {mode} | {rate:.1f} | {p50:.1f} | {p99:.1f} | {rate / base:.1f} |"
                )
    print(
        "\nTarget (issue 12): >= 500 intakes/s sustained with p99 < 200 ms on PostgreSQL, 2 cores."
    )


if __name__ == "__main__":
    main()
