"""Small builders of ingest test data: raw readings as devices send them, and their mapping."""

from __future__ import annotations

import os
from typing import Any

import pytest

from cityos.testing.mosquitto import MosquittoUnavailable, find_mosquitto


def need_mosquitto() -> None:
    """Skip without Mosquitto locally; fail in CI, where it must be installed."""
    try:
        find_mosquitto()
    except MosquittoUnavailable as e:
        if os.environ.get("CI"):
            pytest.fail(f"required in CI: {e}")
        pytest.skip(str(e))


def reading(sensor: str, hour: int, *, lat: float = 39.9, pm25_mg: Any = 0.035) -> dict[str, Any]:
    """A raw sensor reading as a device would send it (local Beijing time, PM2.5 in mg/m³)."""
    return {
        "sensor": sensor,
        "ts": f"2026-03-02 {hour:02d}:00:00",
        "lon": 116.4,
        "lat": lat,
        "pm25_mg": pm25_mg,
    }


#: The mapping every source in the contract test uses.
READINGS_MAPPING: dict[str, Any] = {
    "dataset": {"name": "readings", "model": "point_series"},
    "id": {"from": "sensor"},
    "time": {"from": "ts", "timezone": "Asia/Shanghai"},
    "geometry": {"x": "lon", "y": "lat"},
    "fields": {
        "pm25": {
            "from": "pm25_mg",
            "type": "float64",
            "unit": "ug/m3",
            "source_unit": "mg/m3",
            "minimum": 0,
        }
    },
}
