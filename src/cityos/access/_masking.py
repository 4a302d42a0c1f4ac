"""Masking of personal fields (ID numbers, phones, names, plates ...) in query results.

Rules are per personal kind and configurable; the defaults follow common Chinese practice
(``110***********1234``, ``138****5678``, ``张**``, ``京A****5``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from cityos.access.errors import PolicyError

__all__ = [
    "DEFAULT_RULES",
    "PERSONAL_KINDS",
    "STRATEGIES",
    "MaskingRule",
    "mask_array",
    "mask_table",
]

#: Kinds of personal data a schema field may be marked with (``Field(personal=...)``).
PERSONAL_KINDS = frozenset({"id_number", "phone", "name", "plate", "address", "email"})
#: ``partial`` keeps the ends, ``redact`` replaces the value, ``hash`` keeps a keyed
#: digest (joinable, not readable), ``null`` drops the value.
STRATEGIES = frozenset({"partial", "redact", "hash", "null"})
_REDACTED = "***"
# Without a configured key, hashes are stable within one process only, which is safe
_process_key = secrets.token_bytes(32)


@dataclass(frozen=True)
class MaskingRule:
    """How one personal kind is masked.

    Examples
    --------
    >>> import pyarrow as pa
    >>> mask_array(pa.array(["13812345678", None]), MaskingRule("partial", 3, 4)).to_pylist()
    ['138****5678', None]
    """

    strategy: str = "partial"
    keep_start: int = 0
    keep_end: int = 0
    mask_char: str = "*"

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise PolicyError(
                f"masking strategy must be one of {sorted(STRATEGIES)}, not {self.strategy!r}"
            )
        if not (0 <= self.keep_start <= 64 and 0 <= self.keep_end <= 64):
            raise PolicyError("keep_start and keep_end must be between 0 and 64")
        if len(self.mask_char) != 1:
            raise PolicyError("mask_char must be a single character")


DEFAULT_RULES: Mapping[str, MaskingRule] = {
    "id_number": MaskingRule("partial", 3, 4),
    "phone": MaskingRule("partial", 3, 4),
    "name": MaskingRule("partial", 1, 0),
    "plate": MaskingRule("partial", 2, 1),
    "address": MaskingRule("partial", 6, 0),
    "email": MaskingRule("partial", 1, 0),
}


def _partial(arr: pa.Array, rule: MaskingRule) -> pa.Array:
    n = pc.utf8_length(arr)
    keep = rule.keep_start + rule.keep_end
    # values no longer than what would be kept are masked entirely: nothing leaks
    short = pc.less_equal(n, keep)
    hidden = pc.if_else(short, n, pc.subtract(n, keep))
    middle = pc.binary_repeat(pa.scalar(rule.mask_char), hidden)
    head = pc.utf8_slice_codeunits(arr, 0, rule.keep_start)
    tail = (
        pc.utf8_slice_codeunits(arr, -rule.keep_end)
        if rule.keep_end
        else pa.array([""] * len(arr), pa.string())
    )
    empty = pa.array([""] * len(arr), pa.string())
    head = pc.if_else(short, empty, head)
    tail = pc.if_else(short, empty, tail)
    return pc.binary_join_element_wise(head, middle, tail, "")


def mask_array(
    values: pa.Array | pa.ChunkedArray, rule: MaskingRule, key: bytes | None = None
) -> pa.Array:
    """Mask one column; the result is a string array with nulls kept as nulls."""
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if arr.type != pa.string():
        arr = pc.cast(arr, pa.string())
    if rule.strategy == "null":
        return pa.nulls(len(arr), pa.string())
    if rule.strategy == "redact":
        return pc.if_else(
            pc.is_null(arr), pa.scalar(None, pa.string()), pa.scalar(_REDACTED, pa.string())
        )
    if rule.strategy == "hash":
        k = key or _process_key
        out: list[str | None] = [
            None if v is None else hmac.new(k, v.encode(), hashlib.sha256).hexdigest()[:16]
            for v in arr.to_pylist()
        ]
        return pa.array(out, pa.string())
    return _partial(arr, rule)


def mask_table(
    table: pa.Table,
    personal: Mapping[str, str],
    rules: Mapping[str, MaskingRule],
    shows: Callable[[str], bool],
    key: bytes | None = None,
) -> tuple[pa.Table, list[str]]:
    """Mask every column of ``table`` named in ``personal`` (column → kind) unless shown.

    Returns the masked table and the names of the columns that were masked.
    """
    masked: list[str] = []
    for col, kind in personal.items():
        idx = table.schema.get_field_index(col)
        if idx < 0 or shows(kind):
            continue
        rule = rules.get(kind) or DEFAULT_RULES.get(kind) or MaskingRule("redact")
        table = table.set_column(
            idx, pa.field(col, pa.string()), mask_array(table.column(idx), rule, key)
        )
        masked.append(col)
    return table, masked
