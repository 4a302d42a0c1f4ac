"""The store's canonical sort: ranking text ids before sorting gives exactly ``sort_by``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_sort_table_on_integer_keys_equals_sort_by() -> None:
    t = pa.table({"id": [3, 1, 2], "t": [0, 0, 0]})
    keys = [("id", "ascending"), ("t", "ascending")]
    assert sort_table(t, keys).equals(t.sort_by(keys))


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.one_of(st.none(), st.sampled_from(["a", "b", "é", "ab", ""])),
            st.one_of(st.none(), st.integers(-(2**40), 2**40)),
            st.one_of(st.none(), st.booleans()),
            st.one_of(st.none(), st.integers(-5, 5)),
        ),
        min_size=0,
        max_size=40,
    ),
    orders=st.lists(st.sampled_from(["ascending", "descending"]), min_size=4, max_size=4),
    perm=st.permutations(["s", "t", "b", "i"]),
    nkeys=st.integers(1, 4),
    wide=st.booleans(),
)
def test_sort_table_equals_sort_by_on_any_mix_of_coded_keys(
    rows: list[tuple[Any, ...]], orders: list[str], perm: list[str], nkeys: int, wide: bool
) -> None:
    t = pa.table(
        {
            "s": pa.array([r[0] for r in rows], pa.string()),
            # wide integers do not pack into one int64 with the others: the multi-key path
            "t": pa.array(
                [None if r[1] is None else r[1] * (2**21 if wide else 1) for r in rows],
                pa.int64(),
            ).cast(pa.timestamp("us")),
            "b": pa.array([r[2] for r in rows], pa.bool_()),
            "i": pa.array([r[3] for r in rows], pa.int16()),
            "row": pa.array(range(len(rows)), pa.int64()),
        }
    )
    t = pa.concat_tables([t.slice(0, len(rows) // 2), t.slice(len(rows) // 2)])
    keys = list(zip(perm[:nkeys], orders[:nkeys], strict=True))
    assert sort_table(t, keys).equals(t.sort_by(keys))


def test_keys_it_cannot_code_leave_the_sort_to_sort_by() -> None:
    t = pa.table({"x": [0.5, float("nan"), None, -1.0], "id": ["a", "b", "a", "b"], "r": range(4)})
    keys = [("id", "ascending"), ("x", "descending")]
    assert sort_table(t, keys)["r"].to_pylist() == t.sort_by(keys)["r"].to_pylist() == [0, 2, 3, 1]
    big = pa.table({"u": pa.array([2**64 - 1, 0, 5], pa.uint64())})
    assert sort_table(big, [("u", "ascending")]).equals(big.sort_by([("u", "ascending")]))


def test_keys_too_wide_to_pack_sort_on_their_codes_as_several_keys() -> None:
    # a 62-bit time range and a 2-bit text code do not fit one int64: the multi-key path
    t = pa.table(
        {
            "id": ["b", "a", "c", "a", "b", "a"],
            "t": pa.array([2**60, -(2**60), 0, 2**60, -(2**60), 5], pa.int64()),
            "r": range(6),
        }
    )
    keys = [("id", "descending"), ("t", "ascending")]
    assert sort_table(t, keys).equals(t.sort_by(keys))
    assert sort_table(t, keys)["r"].to_pylist() == [2, 4, 0, 1, 5, 3]
