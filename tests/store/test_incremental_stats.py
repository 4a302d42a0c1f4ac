"""A version's statistics built from the previous version's plus the files added since are
exactly those a fresh load of the catalog gives, over any history of writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builders import make_points
from cityos.model import DatasetSchema, ModelKind
from cityos.store import Store
from cityos.store._catalog import StatsArrays

_FIELDS = ("file_index", "rg", "rows", "t_min", "t_max", "x_min", "y_min", "x_max", "y_max")


def _same(a: StatsArrays, b: StatsArrays) -> None:
    assert a.version == b.version and a.identity == b.identity
    assert a.paths == b.paths
    assert a.file_ids.tolist() == b.file_ids.tolist()
    for f in _FIELDS:
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    assert a.id_hashes == b.id_hashes
    assert a.id_ranges == b.id_ranges


step = st.one_of(
    st.tuples(st.just("append"), st.integers(0, 2**16)),
    st.tuples(st.just("delete"), st.integers(0, 7)),
    st.tuples(st.just("compact"), st.just(0)),
    st.tuples(st.just("recreate"), st.just(0)),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=1, max_size=7))
def test_statistics_after_each_write_equal_a_fresh_load(
    tmp_path_factory: object, steps: list[tuple[str, int]]
) -> None:
    home: Path = tmp_path_factory.mktemp("inc")  # type: ignore[attr-defined]
    live = Store(home)
    live.create_dataset("v", DatasetSchema(ModelKind.POINT_ST))
    for kind, arg in steps:
        if kind == "append":
            pts = make_points(n_objects=3 + arg % 4, n_steps=30, seed=arg)
            pts["t"] = pts["t"] + pd.Timedelta(hours=arg % 50)  # new times and re-deliveries
            live.append("v", pts)
        elif kind == "delete":
            live.delete("v", ids=[f"obj-{arg:03d}"])
        elif kind == "compact":
            live.compact("v", min_files=2)
        else:  # the same name, another incarnation: nothing of the old one may be reused
            live.drop_dataset("v")
            live.create_dataset("v", DatasetSchema(ModelKind.POINT_ST))
            live.append("v", make_points(n_objects=2, n_steps=10, seed=99))
        info = live.describe("v")
        inc = live.catalog.stats("v", info.version)
        fresh = Store(home)
        try:
            _same(inc, fresh.catalog.stats("v", info.version))
        finally:
            fresh.close()
    live.close()
