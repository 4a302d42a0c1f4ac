"""Small cities and fleets shared by the synth tests (built once per session: they are
deterministic, and the tests only read them)."""

from __future__ import annotations

import pandas as pd
import pytest

from cityos.synth import SyntheticCity, make_city, simulate_vehicles

NOISE_M = 5.0


@pytest.fixture(scope="session")
def city() -> SyntheticCity:
    return make_city(seed=7, size_km=5.0, spacing_m=400.0)


@pytest.fixture(scope="session")
def fleet(city: SyntheticCity) -> pd.DataFrame:
    # Monday and Tuesday, every kind present.
    return simulate_vehicles(
        city,
        24,
        start="2026-03-02",
        days=2,
        interval_s=10,
        seed=11,
        noise_m=NOISE_M,
        mix={"taxi": 0.4, "bus": 0.15, "truck": 0.2, "hazmat": 0.1, "car": 0.15},
    )
