"""HTTP push as a source: batches of JSON records handed over by a request handler and
processed by the shared loop before the handler answers.

Pushed records are JSON, so their types are known: by default they are checked strictly
against the dataset's mapping before anything is stored (a boolean is not a number, an
object is not a string, a field the mapping does not read is a mistake, not a new column).
The server's ``POST /datasets/{name}/records`` is the one HTTP entry point; it authorises
and audits through :mod:`cityos.access` and calls :func:`push_records`.
"""

from __future__ import annotations

import json
import queue
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from cityos.errors import ValidationError
from cityos.ingest._base import Batch, BatchResult, Part, Source, SourceContext, mapping_for
from cityos.ingest._mapping import Mapping

if TYPE_CHECKING:
    from cityos.store import Store

__all__ = ["HttpPushSource", "check_records", "push_records"]

# What a source field may hold, by the role the mapping gives it. ``None`` is always
# allowed here (whether a value is required is the mapping's and the schema's business).
_NUMBER = "a number"
_TEXT = "a string"
_ID = "a string or an integer"
_TIME = "an ISO 8601 string or a number"
_ANY_SCALAR = "a string, number or boolean"
_BY_TYPE = {
    "string": _ID,  # integers are exact as text; floats and booleans are not
    "int64": _NUMBER,
    "int32": _NUMBER,
    "float64": _NUMBER,
    "float32": _NUMBER,
    "bool": "a boolean",
    "timestamp": _TIME,
    "date": _TEXT,
    "binary": _TEXT,
    "json": "any JSON value",
}


def _accepts(expected: str, v: Any) -> bool:
    if v is None or expected == "any JSON value":
        return True
    if isinstance(v, bool):
        return expected in ("a boolean", _ANY_SCALAR)
    if expected in (_NUMBER, _TIME) and isinstance(v, int | float):
        return True
    if expected == _ID and isinstance(v, int):
        return True
    if expected == _ANY_SCALAR:
        return isinstance(v, str | int | float)
    if expected == "geojson":
        return isinstance(v, str | dict)
    return isinstance(v, str) and expected in (_TEXT, _ID, _TIME, _ANY_SCALAR)


def _describe(v: Any) -> str:
    if isinstance(v, bool):
        return f"the boolean {str(v).lower()}"
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, list | tuple):
        return "a list"
    if isinstance(v, int | float):
        return "a number"
    return f"a {type(v).__name__}"


def _expectations(mapping: Mapping) -> tuple[dict[str, str], set[str], bool]:
    """(source field -> what it must hold, fields read as containers, unmapped allowed)."""
    doc = mapping.doc
    want: dict[str, str] = {}
    nested: set[str] = set()
    for src in [doc.id.from_] if isinstance(doc.id.from_, str) else list(doc.id.from_):
        want[src] = _ID
    if doc.time is not None and doc.time.from_ is not None:
        if isinstance(doc.time.from_, str):
            want[doc.time.from_] = _TIME
        else:
            for src in doc.time.from_.values():
                want[src] = _ID
    g = doc.geometry
    if g is not None:
        for col, kind in ((g.x, _NUMBER), (g.y, _NUMBER), (g.wkt, _TEXT), (g.wkb, _TEXT)):
            if col:
                want[col] = kind
        if g.geojson:
            want[g.geojson] = "geojson"
    joins = {j.name for j in doc.join}
    for j in doc.join:
        want.setdefault(j.key, _ANY_SCALAR)
    for name, f in doc.fields.items():
        src = f.from_ or name
        top = src.split(".")[0].split("[")[0]
        if top in joins:
            continue
        if top != src:  # a path into an object or list
            nested.add(top)
            continue
        want.setdefault(src, _NUMBER if f.source_unit else _BY_TYPE.get(f.type, _ANY_SCALAR))
    return want, nested, doc.keep_unmapped


def check_records(mapping: Mapping, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The type problems of pushed ``records`` against ``mapping``: one dict per bad value
    naming the dataset, row (0-based), field, what was expected and what was found.

    Examples
    --------
    >>> m = Mapping.from_dict({"dataset": {"name": "ev", "model": "point_st"}, "id": {"from": "id"},
    ...     "time": {"from": "t"}, "geometry": {"x": "x", "y": "y"},
    ...     "fields": {"speed": {"type": "float64"}}})
    >>> [p["message"] for p in check_records(m, [{"id": "a", "t": 0, "x": 1, "y": 2,
    ...     "speed": True, "colour": "red"}])]  # doctest: +NORMALIZE_WHITESPACE
    ["dataset 'ev', record 0, field 'speed': the boolean true where a number is expected",
     "dataset 'ev', record 0, field 'colour': the dataset's mapping reads no such field
     (known: id, speed, t, x, y); remove it or add it to the dataset's fields"]
    """
    want, nested, keep_unmapped = _expectations(mapping)
    ds = mapping.dataset
    known = ", ".join(sorted(want.keys() | nested))
    problems: list[dict[str, Any]] = []

    def bad(row: int, field: str, expected: str, message: str) -> None:
        problems.append(
            {
                "dataset": ds,
                "row": row,
                "field": field,
                "expected": expected,
                "message": f"dataset {ds!r}, record {row}, field {field!r}: {message}",
            }
        )

    for i, rec in enumerate(records):
        for k, v in rec.items():
            expected = want.get(k)
            if expected is None:
                if k in nested:
                    continue
                if keep_unmapped:
                    expected = _ANY_SCALAR
                else:
                    bad(
                        i,
                        k,
                        "a field the mapping reads",
                        f"the dataset's mapping reads no such field (known: {known}); "
                        "remove it or add it to the dataset's fields",
                    )
                    continue
            if not _accepts(expected, v):
                bad(i, k, expected, f"{_describe(v)} where {expected} is expected")
    return problems


def _json_text(mapping: Mapping, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Objects and lists for ``json`` fields as JSON text (never a Python repr)."""
    cols = [
        f.from_ or n
        for n, f in mapping.doc.fields.items()
        if f.type == "json" and "." not in (f.from_ or n)
    ]
    if not cols:
        return records
    out = []
    for r in records:
        if any(isinstance(r.get(c), dict | list) for c in cols):
            r = {
                k: (
                    json.dumps(v, ensure_ascii=False)
                    if k in cols and isinstance(v, dict | list)
                    else v
                )
                for k, v in r.items()
            }
        out.append(r)
    return out


class HttpPushSource(Source):
    """Records pushed over HTTP (or from any caller) for one dataset.

    :meth:`push` queues a batch; :meth:`run` drains the queue through the shared loop. The
    HTTP router does both in the request, so it answers only once the records are durable.

    Examples
    --------
    >>> import tempfile, cityos
    >>> m = Mapping.from_dict({"dataset": {"name": "ev", "model": "point_st"}, "id": {"from": "id"},
    ...     "time": {"from": "t"}, "geometry": {"x": "x", "y": "y"}})
    >>> src = HttpPushSource(m)
    >>> src.push([{"id": "e1", "t": "2026-05-01T10:00Z", "x": -73.9, "y": 40.7}])
    >>> src.run(cityos.open_city(tempfile.mkdtemp())).accepted
    1
    """

    kind = "http"

    def __init__(self, mapping: Mapping, *, name: str | None = None) -> None:
        self.mapping = mapping
        self._queue: queue.Queue[Batch] = queue.Queue()
        super().__init__(mapping, name=name or f"http:{mapping.dataset}")

    def push(self, records: list[dict[str, Any]], *, request_id: str | None = None) -> None:
        """Queue a batch of records; positions are ``http:<request id>#<index>``."""
        rid = request_id or uuid.uuid4().hex[:12]
        self._queue.put(
            Batch(
                self.mapping.dataset,
                [
                    Part(
                        list(records),
                        f"http:{rid}",
                        0,
                        [f"http:{rid}#{i}" for i in range(len(records))],
                    )
                ],
            )
        )

    def read(self, ctx: SourceContext) -> Iterator[Batch]:
        while not ctx.stopping:
            try:
                yield self._queue.get_nowait()
            except queue.Empty:
                return


def push_records(
    store: Store,
    dataset: str,
    records: list[dict[str, Any]],
    *,
    source: str | None = None,
    request_id: str | None = None,
    strict: bool = True,
) -> BatchResult:
    """Ingest pushed records into ``dataset`` with its saved mapping (or the identity
    mapping) and return the counts once they are durable.

    With ``strict`` (the default) the records' JSON types are checked first
    (:func:`check_records`); any mistake refuses the whole batch, so nothing is stored.
    Values of the right type that break the schema (a latitude of 120) are dead-lettered
    one by one, as from every source.

    Raises
    ------
    ValidationError
        ``strict`` and a record has a value of the wrong type or a field the mapping does
        not read; ``problems`` names the dataset, row and field of each.

    Examples
    --------
    >>> import tempfile, cityos
    >>> from cityos.model import DatasetSchema, ModelKind
    >>> city = cityos.open_city(tempfile.mkdtemp())
    >>> _ = city.create_dataset("ev", DatasetSchema(ModelKind.POINT_ST))
    >>> r = push_records(city, "ev", [{"id": "a", "t": "2026-05-01T10:00Z", "x": 1, "y": 2},
    ...                              {"id": "b", "t": "2026-05-01T10:00Z", "x": 1, "y": 200}])
    >>> r.accepted, r.rejected
    (1, 1)
    """
    mapping = mapping_for(store, dataset)
    if strict:
        problems = check_records(mapping, records)
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            first = problems[0]
            raise ValidationError(
                "; ".join(p["message"] for p in problems[:3]) + more + "; nothing was stored",
                dataset=dataset,
                row=first["row"],
                field=first["field"],
                expected=first["expected"],
                problems=problems,
            )
    records = _json_text(mapping, records)
    src = HttpPushSource(mapping, name=source or f"http:{dataset}")
    src.push(records, request_id=request_id)
    report = src.run(store)
    out = report.datasets.get(dataset, BatchResult(dataset))
    return out
