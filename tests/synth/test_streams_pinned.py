"""The generators' outputs are pinned at fixed seeds: adding a dataset to the synthetic city
(such as its water) must not move any existing random stream, because the demo's figures
and other layers' tests depend on the roads, POIs and vehicles being exactly these.

Each digest is SHA-256 over the frame's columns (geometries as WKB, floats bitwise), taken
from the generators before water was added."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd
import pytest
import shapely

from cityos.synth import (
    make_city,
    make_road_speeds,
    make_sensor_readings,
    simulate_vehicles,
)
from cityos.synth._hazchem import make_hazchem
from cityos.synth._reports import make_reports


def digest(df: pd.DataFrame) -> str:
    """SHA-256 of a frame: column names, dtypes and values (geometries as WKB)."""
    h = hashlib.sha256()
    for name in df.columns:
        col: Any = df[name]
        h.update(f"{name}:{col.dtype}".encode())
        vals = col.to_numpy() if not hasattr(col, "geom_type") else None
        if vals is None:
            h.update(b"".join(shapely.to_wkb(np.asarray(col.values, dtype=object))))
        elif vals.dtype == object:
            for v in vals:
                if isinstance(v, shapely.Geometry):
                    h.update(shapely.to_wkb(v))
                else:
                    h.update(repr(v).encode())
        else:
            h.update(np.ascontiguousarray(vals).tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def demo_city() -> Any:
    return make_city(seed=7)  # the demo city's seed (cityos.demo.build_demo_city)


@pytest.fixture(scope="module")
def small() -> Any:
    return make_city(seed=3, size_km=4.0, spacing_m=400.0)


PINNED = {
    "demo.nodes": "ce35637e1c9df722adafa474b599f8c0f6b616b9b301f5ed8cdcd987a152133c",
    "demo.edges": "aca49022322319aa5f448ec51f1fd647fbe4adb3d74c2db6762933b0582809dd",
    "demo.districts": "731e922a9cb585d912fa7aa8772afab628d00da2f7df260910174313ef074038",
    "demo.pois": "1c67d29f19101ee9efcfa03742e60cce6e1ce8053719db110138cc535e5790ab",
    "demo.bus_lines": "0c097a89d5c061ed1e2e170eeb73d387c17ef0e51f8430ae8f1ba289f3e3de17",
    "small.edges": "5678d3cc98ffb4fe8b094a01bd03a54a276b411423379ac90ae21d781c3ef8c5",
    "small.pois": "a3b4f6bcffd90eabd3943481db14cd604539398723af61aaa94ae5f3400bd324",
    "vehicles": "deb1db38fe26c5c8f0d73152f982a436609e02ba4519798f97719d03e73a16f4",
    "sensor_readings": "5b63d0bde652011cc64e7f48da65579ccca2c845aeed19f97eae091a26cc8eda",
    "road_speeds": "9e4238a1ee72a8cf3fcc7e12a25e4eb1e2a121dc35ba28153ec0c6abbeb6acc8",
    "hazchem": "db7a128924809c69b438a9b9cd0293b4125fc752f47952ab6246cfdba37cf0fa",
    "hazchem.enterprises": "4ca5e7aee7c956d195178549e778ea41c8b6ace55dde5062ff8040fb65c76155",
    "reports": "18cf8a4c002b099ad3f9f6e44b73022350553b789844132c5853e90cd40b7970",
}


def outputs(demo_city: Any, small: Any) -> dict[str, pd.DataFrame]:
    bus = demo_city.bus_lines.assign(
        edge_ids=demo_city.bus_lines["edge_ids"].map(tuple),
        node_ids=demo_city.bus_lines["node_ids"].map(tuple),
        stop_nodes=demo_city.bus_lines["stop_nodes"].map(tuple),
    )
    fleet = simulate_vehicles(small, 12, days=1, interval_s=30, seed=5)
    haz = make_hazchem(small, 4, days=1, seed=2)
    return {
        "demo.nodes": demo_city.nodes,
        "demo.edges": demo_city.edges,
        "demo.districts": demo_city.districts,
        "demo.pois": demo_city.pois,
        "demo.bus_lines": bus,
        "small.edges": small.edges,
        "small.pois": small.pois,
        "vehicles": fleet,
        "sensor_readings": make_sensor_readings(small, 5, days=2, seed=1),
        "road_speeds": make_road_speeds(small, fleet),
        "hazchem": haz.points,
        "hazchem.enterprises": haz.enterprises,
        "reports": make_reports(small, 30, days=2, seed=4),
    }


def test_existing_generators_are_byte_identical(demo_city: Any, small: Any) -> None:
    got = {k: digest(v) for k, v in outputs(demo_city, small).items()}
    assert got == PINNED
