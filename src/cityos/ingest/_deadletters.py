"""Dead letters: list the records that failed validation, fix their payloads and replay them
through the dataset's mapping; a record that fails again stays open with the new reason."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cityos.ingest._base import Batch, Part, Rejected, mapping_for, process_batch
from cityos.ingest._mapping import Mapping
from cityos.ingest._state import DeadLetter, IngestState

if TYPE_CHECKING:
    from cityos.store import Store

__all__ = ["DeadLetters", "ReplayReport"]


@dataclass
class ReplayReport:
    """Outcome of a replay: how many dead letters were stored now and how many failed again."""

    replayed: int = 0
    failed: int = 0
    duplicates: int = 0

    def lines(self) -> list[str]:
        return [f"{self.replayed} replayed, {self.failed} still failing"]


class _Collect(IngestState):
    """Captures the failures of a replay instead of writing new dead letters."""

    def __init__(self, state: IngestState) -> None:
        super().__init__(state.db)
        self.failures: dict[str, tuple[str, str]] = {}

    def add_dead_letters(
        self, dataset: str, source: str, items: Iterable[tuple[str, Any, str, str]]
    ) -> int:
        for position, _payload, rule, message in items:
            self.failures[position] = (rule, message)
        return 0


class DeadLetters:
    """The dead-letter store of a city.

    Examples
    --------
    >>> import tempfile, cityos
    >>> from cityos.model import DatasetSchema, ModelKind
    >>> from cityos.ingest import push_records
    >>> city = cityos.open_city(tempfile.mkdtemp())
    >>> _ = city.create_dataset("ev", DatasetSchema(ModelKind.POINT_ST))
    >>> _ = push_records(city, "ev", [{"id": "a", "t": "2026-05-01T10:00Z", "x": 1, "y": 95}])
    >>> dl = DeadLetters(city); [d] = dl.list(); d.rule
    'y: a latitude in [-90.0, 90.0] (EPSG:4326)'
    >>> dl.fix(d.id, {**d.payload, "y": 45}); dl.replay().replayed
    1
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.state = IngestState(store.db)

    def list(
        self, *, dataset: str | None = None, status: str | None = "open", limit: int | None = None
    ) -> list[DeadLetter]:
        """Dead letters, oldest first (``status``: open, replayed, discarded or None for all)."""
        return self.state.dead_letters(dataset=dataset, status=status, limit=limit)

    def get(self, id: int) -> DeadLetter:
        found = self.state.dead_letters(ids=[id], status=None)
        if not found:
            from cityos.ingest.errors import IngestError

            raise IngestError(f"no dead letter with id {id}; see `cityos deadletters list`")
        return found[0]

    def fix(self, id: int, payload: Any) -> None:
        """Replace a dead letter's payload (then :meth:`replay` it)."""
        self.get(id)
        self.state.update_dead_letter(id, payload=payload)

    def discard(self, ids: Iterable[int]) -> None:
        """Mark dead letters as discarded (kept for the record, never replayed)."""
        for i in ids:
            self.state.update_dead_letter(i, status="discarded")

    def replay(
        self,
        *,
        dataset: str | None = None,
        ids: Iterable[int] | None = None,
        mapping: Mapping | None = None,
    ) -> ReplayReport:
        """Run open dead letters through their dataset's mapping again.

        Uses the mapping saved when the records were first ingested unless ``mapping`` is
        given (e.g. a corrected one). Stored letters become ``replayed``; the others stay open
        with the rule they broke this time.
        """
        letters = self.state.dead_letters(dataset=dataset, ids=ids, status="open")
        by_ds: dict[str, list[DeadLetter]] = defaultdict(list)
        for d in letters:
            by_ds[d.dataset].append(d)
        rep = ReplayReport()
        for ds, items in by_ds.items():
            m = (
                mapping
                if mapping is not None and mapping.dataset == ds
                else mapping_for(self.store, ds)
            )
            recs = [d for d in items if isinstance(d.payload, dict)]
            bad = [
                Rejected(
                    f"deadletter:{d.id}",
                    d.payload,
                    "payload.object",
                    "payload is not a JSON object; fix it first",
                )
                for d in items
                if not isinstance(d.payload, dict)
            ]
            batch = Batch(
                ds,
                [
                    Part(
                        [d.payload for d in recs],
                        "deadletters",
                        0,
                        [f"deadletter:{d.id}" for d in recs],
                    )
                ],
                bad,
            )
            collect = _Collect(self.state)
            res = process_batch(self.store, m, batch, "replay", collect)
            lid = self.state.start_lineage(ds, "replay", "deadletters")
            self.state.add_lineage(
                lid,
                received=res.received,
                accepted=res.accepted,
                duplicates=res.duplicates,
                rejected=res.rejected,
            )
            rep.duplicates += res.duplicates
            for d in items:
                fail = collect.failures.get(f"deadletter:{d.id}")
                if fail is None:
                    self.state.update_dead_letter(d.id, status="replayed", attempts=d.attempts + 1)
                    rep.replayed += 1
                else:
                    self.state.update_dead_letter(
                        d.id, rule=fail[0][:500], message=fail[1], attempts=d.attempts + 1
                    )
                    rep.failed += 1
        return rep
