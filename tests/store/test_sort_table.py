"""The store's canonical sort: ranking text ids before sorting gives exactly ``sort_by``."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from cityos.store._engine import sort_table


@pytest.mark.parametrize("order", ["ascending", "descending"])
@pytest.mark.parametrize("large", [False, True])
def test_sort_table_equals_sort_by(order: str, large: bool) -> None:
    rng = np.random.default_rng(5)
    n = 5000
    ids = [None if k == 0 else f"v{k:03d}" if k % 3 else f"é{k}" for k in rng.integers(0, 60, n)]
    t = pa.table(
        {
            "id": pa.array(ids, pa.large_string() if large else pa.string()),
            "t": pa.array(rng.integers(0, 50, n), pa.timestamp("ms", tz="UTC")),
            "row": np.arange(n),  # ties on (id, t) must keep their order
        }
    )
    t = pa.concat_tables([t.slice(0, 1234), t.slice(1234)])  # several chunks
    keys = [("id", order), ("t", "ascending")]
    assert sort_table(t, keys).equals(t.sort_by(keys))


def test_sort_table_leaves_other_keys_to_sort_by() -> None:
    t = pa.table({"id": [3, 1, 2], "t": [0, 0, 0]})
    keys = [("id", "ascending"), ("t", "ascending")]
    assert sort_table(t, keys).equals(t.sort_by(keys))
