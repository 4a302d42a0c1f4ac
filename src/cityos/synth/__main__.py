"""Time the synthetic GPS stream: ``python -m cityos.synth [N_POINTS] [CHUNK_POINTS]``."""

from __future__ import annotations

import sys
import time

from cityos.synth import iter_vehicle_points, make_city


def main(argv: list[str]) -> None:
    """Generate ``N_POINTS`` (default 1,000,000) points and print the rate."""
    total = int(float(argv[0])) if argv else 1_000_000
    chunk = int(float(argv[1])) if len(argv) > 1 else 1_000_000
    t0 = time.perf_counter()
    city = make_city()
    t1 = time.perf_counter()
    n = 0
    for df in iter_vehicle_points(city, total, chunk_points=chunk):
        n += len(df)
    t2 = time.perf_counter()
    print(f"city: {len(city.edges)} edges in {t1 - t0:.2f} s")
    print(f"points: {n:,} in {t2 - t1:.2f} s = {n / (t2 - t1):,.0f} points/s")


if __name__ == "__main__":
    main(sys.argv[1:])
