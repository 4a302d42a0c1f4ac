"""The ingest loop every source shares: read batches with positions, map, validate, append
to the store, dead-letter the bad records, record lineage, then commit the source position."""

from __future__ import annotations

import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa

from cityos.errors import DatasetNotFound, ValidationError
from cityos.ingest._mapping import Mapping
from cityos.ingest._state import IngestState
from cityos.ingest.errors import IngestError

if TYPE_CHECKING:
    from cityos.store import Store

__all__ = [
    "Batch",
    "BatchResult",
    "IngestReport",
    "MappedBatch",
    "Part",
    "Rejected",
    "Source",
    "SourceContext",
    "identity_mapping",
    "map_batch",
    "mapping_for",
    "process_batch",
    "store_batch",
]


@dataclass
class Part:
    """Records from one place (a file, a table, a topic) and where each came from."""

    records: pa.Table | list[dict[str, Any]]
    ref: str
    offset: int = 0
    positions: Sequence[str] | None = None

    def __len__(self) -> int:
        return self.records.num_rows if isinstance(self.records, pa.Table) else len(self.records)

    def position(self, i: int) -> str:
        return (
            self.positions[i] if self.positions is not None else f"{self.ref}#row={self.offset + i}"
        )

    def payload(self, i: int) -> Any:
        if isinstance(self.records, pa.Table):
            return self.records.slice(i, 1).to_pylist()[0]
        return self.records[i]


@dataclass(frozen=True)
class Rejected:
    """A record the source itself could not decode (not JSON, malformed CSV line)."""

    position: str
    payload: Any
    rule: str
    message: str


@dataclass
class Batch:
    """What a source yields: records for one dataset, and what to do once they are durable
    (``on_durable`` acknowledges messages or saves the source position)."""

    dataset: str
    parts: list[Part]
    rejected: list[Rejected] = field(default_factory=list)
    on_durable: Callable[[], None] | None = None
    progress: int = 0  # units of work consumed (bytes for files), for progress bars

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts) + len(self.rejected)


@dataclass
class BatchResult:
    """Counts for one batch: received, accepted (newly stored), duplicates, rejected."""

    dataset: str
    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)  # {position, rule, message}


@dataclass
class IngestReport:
    """Totals of one :meth:`Source.run`, per dataset."""

    source: str
    datasets: dict[str, BatchResult] = field(default_factory=dict)
    batches: int = 0
    seconds: float = 0.0

    def add(self, r: BatchResult) -> None:
        t = self.datasets.setdefault(r.dataset, BatchResult(r.dataset))
        t.received += r.received
        t.accepted += r.accepted
        t.duplicates += r.duplicates
        t.rejected += r.rejected
        t.problems.extend(r.problems[: max(0, 1000 - len(t.problems))])

    @property
    def accepted(self) -> int:
        return sum(r.accepted for r in self.datasets.values())

    @property
    def rejected(self) -> int:
        return sum(r.rejected for r in self.datasets.values())

    @property
    def received(self) -> int:
        return sum(r.received for r in self.datasets.values())

    def lines(self) -> list[str]:
        """One short line per dataset, for CLIs and the demo."""
        out = []
        for r in self.datasets.values():
            out.append(
                f"{r.dataset}: {r.accepted:,} stored, {r.duplicates:,} already present, "
                f"{r.rejected:,} dead-lettered (from {self.source}, {self.seconds:.1f} s)"
            )
        return out


@dataclass
class SourceContext:
    """What a running source may use: the store, the ingest state and a stop signal."""

    store: Store
    state: IngestState
    stop: threading.Event
    # set by the ingest loop itself when it ends early (an error while storing), so a source
    # reading ahead on a helper thread stops too, without touching the caller's ``stop``
    halt: threading.Event = field(default_factory=threading.Event)

    @property
    def stopping(self) -> bool:
        return self.stop.is_set() or self.halt.is_set()


def identity_mapping(name: str, store: Store) -> Mapping:
    """A mapping for records already in the dataset's canonical columns (``id``, ``t``,
    ``x``/``y`` or WKT ``geometry``, then the declared fields)."""
    schema = store.schema(name)
    doc: dict[str, Any] = {
        "dataset": {
            "name": name,
            "model": str(schema.model),
            "crs": schema.crs,
            "key": list(schema.key),
            "geometry_type": str(schema.geometry_type),
            "id_type": schema.id_type,
            "time_partition": schema.time_partition,
            "time_bin": schema.time_bin,
        },
        "id": {"from": "id"},
        "fields": {
            f.name: {"type": f.type, **({"unit": f.unit} if f.unit else {})} for f in schema.fields
        },
    }
    if schema.model.has_time:
        doc["time"] = {"from": "t"}
    if schema.stations is not None:
        doc["dataset"]["stations"] = schema.stations
    elif schema.model.has_geometry:
        doc["geometry"] = (
            {"x": "x", "y": "y", "crs": schema.crs}
            if schema.point_layout
            else {"wkt": "geometry", "crs": schema.crs}
        )
    return Mapping.from_dict(doc, origin=f"identity mapping of {name!r}")


def mapping_for(store: Store, dataset: str) -> Mapping:
    """The mapping last used to ingest ``dataset``, else the identity mapping.

    Raises
    ------
    DatasetNotFound
        When the dataset neither exists nor has a saved mapping.
    """
    saved = IngestState(store.db).mapping(dataset)
    if saved is not None:
        import json

        return Mapping.from_dict(
            json.loads(saved[0]), base_dir=saved[1], origin=f"saved mapping of {dataset!r}"
        )
    return identity_mapping(dataset, store)


def ensure_dataset(store: Store, mapping: Mapping, state: IngestState) -> None:
    """Create the mapping's dataset if missing, or check that the existing one agrees with
    the mapping, bind the mapping to the store, and remember it for replays.

    Raises
    ------
    MappingError
        The dataset exists but the mapping sets other layout settings (time partitioning,
        CRS, key, ...), another description, other stations, or fields the dataset does
        not declare: a stored dataset keeps the schema it was created with, so nothing the
        mapping says is dropped silently.
    """
    from cityos.ingest._mapping import schema_differences
    from cityos.ingest.errors import MappingError

    try:
        info = store.describe(mapping.dataset)
    except DatasetNotFound:
        store.create_dataset(
            mapping.dataset,
            mapping.schema(),
            exist_ok=True,
            description=mapping.doc.dataset.description,
        )
    else:
        diffs = schema_differences(mapping.doc, info.schema, info.description)
        if diffs:
            lines = "\n".join(f"  - {p}: {m}" for p, m in diffs)
            raise MappingError(
                f"dataset {mapping.dataset!r} already exists and the mapping disagrees with "
                f"it:\n{lines}\nA dataset keeps the schema it was created with: make the "
                f"mapping match, or drop the dataset (`cityos dataset drop {mapping.dataset}`) "
                "and ingest again to re-create it.",
                diffs,
            )
    mapping.bind(store)
    state.save_mapping(
        mapping.dataset,
        mapping.to_json(),
        str(mapping.base_dir) if mapping.base_dir is not None else None,
    )


def _rule(p: dict[str, Any]) -> str:
    f = p.get("field")
    e = p.get("expected")
    if f and e:
        return f"{f}: {e}"
    return str(f or e or "schema")


@dataclass
class MappedBatch:
    """A batch after mapping, before storage: the mapped tables of its parts (bad rows
    removed), where each kept row came from, and the dead letters found so far."""

    batch: Batch
    tables: list[pa.Table]
    origin: list[tuple[int, np.ndarray]]  # (part index, row indices) of the rows kept
    dead: list[tuple[str, Any, str, str]]  # (position, payload, rule, message)


def map_batch(mapping: Mapping, batch: Batch) -> MappedBatch:
    """Map one batch (no store access, so it can run ahead of the append of the previous
    batch on another thread)."""
    dead: list[tuple[str, Any, str, str]] = [
        (r.position, r.payload, r.rule, r.message) for r in batch.rejected
    ]
    tables: list[pa.Table] = []
    origin: list[tuple[int, np.ndarray]] = []
    for pi, part in enumerate(batch.parts):
        if len(part) == 0:
            continue
        mapped = mapping.apply(part.records)
        first: dict[int, Any] = {}
        for p in mapped.problems:
            first.setdefault(p.row, p)
        for row, p in first.items():
            dead.append((part.position(row), part.payload(row), p.rule, p.message))
        if first:
            ok = np.ones(len(part), dtype=bool)
            ok[np.fromiter(first, dtype=np.int64, count=len(first))] = False
            keep = np.flatnonzero(ok)
            tbl = mapped.table.take(pa.array(keep))
        else:  # the usual case: no sort, no copy
            keep = np.arange(len(part))
            tbl = mapped.table
        tables.append(tbl)
        origin.append((pi, keep))
    return MappedBatch(batch, tables, origin, dead)


def process_batch(
    store: Store, mapping: Mapping, batch: Batch, source: str, state: IngestState | None = None
) -> BatchResult:
    """Map, validate and append one batch; dead-letter every record that fails.

    Good records are stored even when others in the batch are bad: the batch is split
    using the rows the store's :class:`~cityos.errors.ValidationError` names.
    """
    if not mapping.bound:
        mapping.bind(store)
    return store_batch(store, mapping, map_batch(mapping, batch), source, state)


def store_batch(
    store: Store, mapping: Mapping, mb: MappedBatch, source: str, state: IngestState | None = None
) -> BatchResult:
    """Append a mapped batch (one store append when its parts agree on column types) and
    write its dead letters; see :func:`process_batch`."""
    state = state or IngestState(store.db)
    batch, tables, origin, dead = mb.batch, mb.tables, mb.origin, list(mb.dead)
    res = BatchResult(batch.dataset, received=len(batch))
    if tables:
        try:
            table = (
                pa.concat_tables(tables, promote_options="permissive")
                if len(tables) > 1
                else tables[0]
            )
            where = np.concatenate([np.full(len(k), pi) for pi, k in origin])
            rows = np.concatenate([k for _, k in origin])
            groups = [(table, where, rows)]
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # parts disagree on a column's type: append them one by one
            groups = [
                (t, np.full(len(k), pi), k) for t, (pi, k) in zip(tables, origin, strict=True)
            ]
        for table, where, rows in groups:
            _append_split(store, batch, mapping.dataset, source, table, where, rows, res, dead)
    if dead:
        state.add_dead_letters(mapping.dataset, source, dead)
    res.rejected = len(dead)
    res.problems = [{"position": d[0], "rule": d[2], "message": d[3]} for d in dead]
    return res


def _append_split(
    store: Store,
    batch: Batch,
    dataset: str,
    source: str,
    table: pa.Table,
    where: np.ndarray,
    rows: np.ndarray,
    res: BatchResult,
    dead: list[tuple[str, Any, str, str]],
) -> None:
    while table.num_rows:
        try:
            w = store.append(dataset, table, source=source)
        except ValidationError as e:
            bad: dict[int, dict[str, Any]] = {}
            for p in e.problems:
                if p.get("row") is not None:
                    bad.setdefault(int(p["row"]), p)
            if not bad:  # a batch-level problem (e.g. a missing column): every row is bad
                bad = {
                    i: {"field": e.field, "expected": e.expected, "message": str(e)}
                    for i in range(table.num_rows)
                }
            for i, p in bad.items():
                part = batch.parts[int(where[i])]
                r = int(rows[i])
                dead.append(
                    (part.position(r), part.payload(r), _rule(p), str(p.get("message", "")))
                )
            keep = np.setdiff1d(
                np.arange(table.num_rows), np.fromiter(bad, dtype=np.int64, count=len(bad))
            )
            table, where, rows = table.take(pa.array(keep)), where[keep], rows[keep]
            continue
        res.accepted += w.rows_written
        res.duplicates += w.duplicates
        return


class Source(ABC):
    """A place records come from. Subclasses implement :meth:`read` only; the base class
    runs the loop (map → validate → append → dead letters → lineage → commit position).

    Parameters
    ----------
    mappings:
        One mapping, or several when the source feeds several datasets (MQTT topics).
    name:
        Stable name of the source; positions, files seen and lineage are kept under it.

    Examples
    --------
    A source that yields two records from memory:

    >>> import tempfile, cityos
    >>> class Listed(Source):
    ...     kind = "listed"
    ...     def read(self, ctx):
    ...         yield Batch("cars", [Part([{"id": "a", "t": "2026-03-02T08:00Z", "x": 1.0, "y": 2.0},
    ...                                   {"id": "b", "t": "yesterday", "x": 1.0, "y": 2.0}], "memory")])
    >>> m = Mapping.from_dict({"dataset": {"name": "cars", "model": "point_st"}, "id": {"from": "id"},
    ...                        "time": {"from": "t"}, "geometry": {"x": "x", "y": "y"}})
    >>> report = Listed(m, name="demo").run(cityos.open_city(tempfile.mkdtemp()))
    >>> report.accepted, report.rejected
    (1, 1)
    """

    kind: ClassVar[str] = "source"
    #: Read and map the next batch on a helper thread while the current one is appended.
    #: Only for sources whose reading does not depend on the previous batch being committed
    #: (acknowledgements and positions are still committed strictly in order, after storage).
    prefetch: ClassVar[bool] = False

    def __init__(self, mappings: Mapping | Sequence[Mapping], *, name: str | None = None) -> None:
        ms = [mappings] if isinstance(mappings, Mapping) else list(mappings)
        if not ms:
            raise IngestError(f"{type(self).__name__} needs at least one mapping")
        self.mappings: dict[str, Mapping] = {m.dataset: m for m in ms}
        self.name = name or self.default_name()

    def default_name(self) -> str:
        return f"{self.kind}:{','.join(self.mappings)}"

    @abstractmethod
    def read(self, ctx: SourceContext) -> Iterator[Batch]:
        """Yield batches of records with their positions; stop when ``ctx.stopping``."""

    def total(self, ctx: SourceContext) -> int | None:
        """Units of work ahead (bytes for files), for a progress bar; None when unknown."""
        return None

    def close(self) -> None:
        """Release connections (called when :meth:`run` ends)."""
        return None

    def run(
        self,
        store: Store,
        *,
        stop: threading.Event | None = None,
        on_batch: Callable[[BatchResult, Batch], None] | None = None,
    ) -> IngestReport:
        """Ingest until the source is exhausted (or ``stop`` is set) and return the totals.

        A batch's position is committed (file marked done, watermark saved, messages
        acknowledged) only after its records are durably stored and its dead letters written.
        """
        state = IngestState(store.db)
        ctx = SourceContext(store, state, stop or threading.Event())
        for m in self.mappings.values():
            ensure_dataset(store, m, state)
        lineage: dict[str, int] = {}
        report = IngestReport(self.name)
        t0 = time.perf_counter()
        ahead: _Ahead | None = None
        try:
            items: Iterator[MappedBatch] = self._mapped(ctx)
            if self.prefetch:
                items = ahead = _Ahead(items, ctx)
            for mb in items:
                batch = mb.batch
                mapping = self.mappings[batch.dataset]
                res = store_batch(store, mapping, mb, self.name, state)
                lid = lineage.get(batch.dataset)
                if lid is None:
                    lid = lineage[batch.dataset] = state.start_lineage(
                        batch.dataset, self.name, self.kind
                    )
                state.add_lineage(
                    lid,
                    received=res.received,
                    accepted=res.accepted,
                    duplicates=res.duplicates,
                    rejected=res.rejected,
                )
                if batch.on_durable is not None:
                    batch.on_durable()
                report.add(res)
                report.batches += 1
                if on_batch is not None:
                    on_batch(res, batch)
        finally:
            if ahead is not None:
                ahead.finish()
            report.seconds = time.perf_counter() - t0
            self.close()
        return report

    def _mapped(self, ctx: SourceContext) -> Iterator[MappedBatch]:
        for batch in self.read(ctx):
            mapping = self.mappings.get(batch.dataset)
            if mapping is None:
                raise IngestError(
                    f"source {self.name!r} produced records for {batch.dataset!r}, "
                    f"which has no mapping (known: {sorted(self.mappings)})"
                )
            yield map_batch(mapping, batch)


_END = object()


class _Ahead(Iterator[MappedBatch]):
    """Runs a source's read-and-map generator on a helper thread, one batch ahead of the
    consumer (a queue of one), so CSV parsing, JSON decoding and mapping (much of it in
    Arrow/NumPy code that releases the GIL) overlap the store append of the previous batch.
    Errors on the helper thread are re-raised in the consumer."""

    def __init__(self, items: Iterator[MappedBatch], ctx: SourceContext) -> None:
        self._items = items
        self._ctx = ctx
        self._q: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._work, name="cityos-ingest-read", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._ctx.halt.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            for mb in self._items:
                if not self._put(mb):
                    return  # the consumer gave up: leave the batch uncommitted (it is re-read)
            self._put(_END)
        except BaseException as e:  # handed to the consumer, which raises it
            self._put(e)

    def __next__(self) -> MappedBatch:
        item = self._q.get()
        if item is _END:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item  # type: ignore[no-any-return]

    def finish(self) -> None:
        """Stop the helper (the consumer is done or failed) and wait for it."""
        self._ctx.halt.set()
        self._thread.join()
