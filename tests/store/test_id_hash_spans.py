"""The row groups an id lookup finds, checked group by group (an append's duplicate check of
new times) or through the version's hash index (queries), are the same."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cityos.store._catalog import SPAN_DTYPE, SPANS_MARK, StatsArrays


def _stats(groups: list[list[tuple[int, int, int]] | None], plain: list[bool]) -> StatsArrays:
    n = len(groups)
    t_min = np.array([1_000_000 * i for i in range(n)], dtype=np.int64)
    blobs: list[bytes | None] = []
    for i, g in enumerate(groups):
        if g is None:
            blobs.append(None)
        elif plain[i]:  # ids without time spans: the group's own range applies
            blobs.append(np.array([h for h, _, _ in g], dtype=np.uint32).tobytes())
        else:
            rec = np.array(g, dtype=SPAN_DTYPE)
            blobs.append(SPANS_MARK + rec.tobytes())
    z = np.zeros(n)
    return StatsArrays(
        version=1,
        paths=["f"],
        file_index=np.zeros(n, dtype=np.int64),
        rg=np.arange(n),
        rows=np.ones(n, dtype=np.int64),
        t_min=t_min,
        t_max=t_min + 50_000,
        x_min=z,
        y_min=z,
        x_max=z,
        y_max=z,
        id_hashes=blobs,
    )


span = st.tuples(st.integers(0, 12), st.integers(0, 40), st.integers(0, 40)).map(
    lambda s: (s[0], min(s[1], s[2]), max(s[1], s[2]))
)


@settings(max_examples=300, deadline=None)
@given(
    groups=st.lists(st.one_of(st.none(), st.lists(span, max_size=5)), min_size=1, max_size=40),
    plain=st.lists(st.booleans(), min_size=40, max_size=40),
    hashes=st.lists(st.integers(0, 12), min_size=1, max_size=4, unique=True),
    window=st.tuples(
        st.one_of(st.none(), st.integers(0, 40 * 10**6)),
        st.one_of(st.none(), st.integers(0, 40 * 10**6)),
    ),
    pick=st.lists(st.integers(0, 39), max_size=6),
)
def test_groups_checked_one_by_one_equal_the_index_lookup(
    groups: list[list[tuple[int, int, int]] | None],
    plain: list[bool],
    hashes: list[int],
    window: tuple[int | None, int | None],
    pick: list[int],
) -> None:
    h = np.array(sorted(hashes), dtype=np.uint32)
    among = np.array(sorted({p for p in pick if p < len(groups)}), dtype=np.int64)
    one_by_one = _stats(groups, plain)
    direct = one_by_one.rows_with_ids(h, *window, among=among)
    if len(among) * 8 <= len(groups):
        assert one_by_one._by_hash is None  # answered without building the index
    indexed = _stats(groups, plain)
    full = indexed.rows_with_ids(h, *window)
    assert indexed._by_hash is not None  # the index path was taken
    want = np.zeros(len(groups), dtype=bool)
    want[among] = full[among]
    assert direct.tolist() == want.tolist()
    # once the index exists it answers for `among` too
    assert indexed.rows_with_ids(h, *window, among=among).tolist() == want.tolist()
