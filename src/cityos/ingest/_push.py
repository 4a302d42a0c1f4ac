"""HTTP push as a source: batches of JSON records handed over by a request handler and
processed by the shared loop before the handler answers."""

from __future__ import annotations

import queue
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from cityos.ingest._base import Batch, BatchResult, Part, Source, SourceContext, mapping_for
from cityos.ingest._mapping import Mapping

if TYPE_CHECKING:
    from cityos.store import Store

__all__ = ["HttpPushSource", "push_records"]


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
) -> BatchResult:
    """Ingest pushed records into ``dataset`` with its saved mapping (or the identity
    mapping) and return the counts once they are durable.

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
    src = HttpPushSource(mapping_for(store, dataset), name=source or f"http:{dataset}")
    src.push(records, request_id=request_id)
    report = src.run(store)
    out = report.datasets.get(dataset, BatchResult(dataset))
    return out
