"""Load one file into an existing dataset by naming its columns: the mapping behind
``cityos load``, run through :class:`FileSource` like every other ingest (one parser, one
mapping engine, dead letters and lineage)."""

from __future__ import annotations

from collections.abc import Mapping as MappingT
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cityos.ingest._base import IngestReport
from cityos.ingest._files import FileSource, _format_or_fail, detect_delimiter, file_columns
from cityos.ingest._mapping import Mapping
from cityos.ingest.errors import SourceError
from cityos.model import GEOM_COL, ModelKind

if TYPE_CHECKING:
    from cityos.store import Store

__all__ = ["FileLoad", "file_mapping", "load_file"]

# canonical columns a mapping has no key for: taken from same-named file columns
_PASS_THROUGH = {
    ModelKind.NETWORK_STATIC: ("from_node", "to_node"),
    ModelKind.NETWORK_ST: ("traj_id", "t_end", "times", "edges"),
}


@dataclass
class FileLoad:
    """What :func:`load_file` did: the ingest report and notes for the user (columns not
    stored, columns shadowed by the chosen ones, fields absent from the file)."""

    report: IngestReport
    notes: list[str] = field(default_factory=list)
    delimiter: str | None = None

    @property
    def written(self) -> int:
        return self.report.accepted

    @property
    def duplicates(self) -> int:
        return sum(r.duplicates for r in self.report.datasets.values())


def file_mapping(
    store: Store,
    dataset: str,
    path: str | Path,
    *,
    id: str = "id",
    t: str = "t",
    x: str = "x",
    y: str = "y",
    geometry: str = GEOM_COL,
    columns: MappingT[str, str] | None = None,
    crs: str | None = None,
    time_format: str = "iso8601",
    timezone: str = "UTC",
    delimiter: str | None = None,
    format: str | None = None,
) -> tuple[Mapping, list[str]]:
    """The mapping that reads ``path`` into the existing ``dataset``, and notes for the user.

    ``id``, ``t``, ``x``, ``y`` (or ``geometry``) name the file's columns for the canonical
    ones; the dataset's declared fields come from same-named columns, or from the column
    ``columns[field]``. The chosen columns win over file columns that happen to be named
    ``id``, ``t``, ``x`` or ``y``; those, and every column that is not a declared field, are
    not stored (a note says so). A chosen column the file lacks is an error naming it.

    Examples
    --------
    >>> import tempfile, pathlib, cityos
    >>> from cityos.model import DatasetSchema, Field, ModelKind
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "a.csv").write_text("id;plate;time;lon;lat;speed\\n1;A;2026-03-02T08:00Z;116.4;39.9;30\\n")
    >>> city = cityos.open_city(d / "city")
    >>> _ = city.create_dataset("cars", DatasetSchema(ModelKind.POINT_ST, fields=(Field("speed", "float64"),)))
    >>> m, notes = file_mapping(city, "cars", d / "a.csv", id="plate", t="time", x="lon", y="lat")
    >>> m.doc.id.from_, m.doc.read.delimiter
    ('plate', ';')
    >>> notes
    ["file column 'id' is not stored: the id comes from 'plate' (--id)"]
    """
    p = Path(path)
    schema = store.schema(dataset)
    fmt = _format_or_fail(p, format)
    if fmt == "csv" and delimiter is None:
        delimiter = detect_delimiter(p)
    have = file_columns(p, fmt, delimiter=delimiter)
    cols = dict(columns or {})
    notes: list[str] = []

    def need(col: str, what: str, option: str) -> None:
        if col not in have:
            raise SourceError(
                f"{p}: no column {col!r} for the {what} ({option} {col}); the file's columns "
                f"are {', '.join(map(repr, have)) or 'none'}; name the right one with {option}"
            )

    used: set[str] = set()
    need(id, "id", "--id")
    used.add(id)
    doc: dict[str, Any] = {
        "dataset": {
            "name": dataset,
            "model": str(schema.model),
            "crs": schema.crs,
            "id_type": schema.id_type,
        },
        "read": {"format": fmt, **({"delimiter": delimiter} if delimiter else {})},
        "id": {"from": id},
    }
    chosen = {"id": (id, "--id")}
    if schema.model.has_time and schema.model is not ModelKind.NETWORK_ST:
        need(t, "time", "--t")
        used.add(t)
        chosen["t"] = (t, "--t")
        doc["time"] = {"from": t, "format": time_format, "timezone": timezone}
    if schema.model.has_geometry and schema.model is not ModelKind.NETWORK_ST:
        src_crs = crs or schema.crs
        if x in have and y in have:
            doc["geometry"] = {"x": x, "y": y, "crs": src_crs}
            used |= {x, y}
            chosen["x"], chosen["y"] = (x, "--x"), (y, "--y")
        elif geometry in have:
            enc = "wkb" if fmt in ("parquet", "geojson", "gpkg", "shp") else "wkt"
            doc["geometry"] = {enc: geometry, "crs": src_crs}
            used.add(geometry)
            chosen[GEOM_COL] = (geometry, "--geometry")
        else:
            missing = [c for c in (x, y) if c not in have]
            raise SourceError(
                f"{p}: no column {missing[0]!r} for the "
                f"{'x' if missing[0] == x else 'y'} coordinate "
                f"(--x {x} --y {y}) and no geometry column {geometry!r} (--geometry); the "
                f"file's columns are {', '.join(map(repr, have))}"
            )
    fields: dict[str, Any] = {}
    for f in schema.fields:
        src = cols.pop(f.name, f.name)
        if src not in have:
            if f.name in (columns or {}):
                raise SourceError(
                    f"{p}: no column {src!r} for field {f.name!r} (--column {f.name}={src}); "
                    f"the file's columns are {', '.join(map(repr, have))}"
                )
            notes.append(f"field {f.name!r} of {dataset!r} is not in the file: stored as null")
            continue
        fields[f.name] = {"from": src, "type": f.type, **({"unit": f.unit} if f.unit else {})}
        used.add(src)
    if cols:
        raise SourceError(
            f"--column {', '.join(cols)}: not field(s) of {dataset!r} "
            f"(its fields: {', '.join(f.name for f in schema.fields) or 'none'})"
        )
    doc["fields"] = fields
    passed = [c for c in _PASS_THROUGH.get(schema.model, ()) if c in have]
    if passed:
        doc["keep_unmapped"] = True
        used |= set(passed)
    doc["read"]["columns"] = [c for c in have if c in used]
    for canon, (src, option) in chosen.items():
        if canon in have and canon != src and canon not in used:
            what = {"id": "the id", "t": "the time", "x": "x", "y": "y"}.get(canon, canon)
            notes.append(
                f"file column {canon!r} is not stored: {what} comes from {src!r} ({option})"
            )
    ignored = [c for c in have if c not in used and c not in chosen]
    if ignored:
        notes.append(
            f"column(s) {', '.join(map(repr, ignored))} are not fields of {dataset!r} and are not "
            "stored; declare them (`cityos dataset create ... --field NAME:TYPE`) to keep them"
        )
    return Mapping.from_dict(doc, base_dir=p.parent, origin=f"cityos load {p.name}"), notes


def load_file(
    store: Store,
    dataset: str,
    path: str | Path,
    *,
    batch_rows: int = 1_000_000,
    on_batch: Any = None,
    **options: Any,
) -> FileLoad:
    """Load one file into the existing ``dataset`` (see :func:`file_mapping` for the
    column options): appends, skipping records already stored; bad records go to the dead
    letters; the load is recorded in the lineage.

    Examples
    --------
    >>> import tempfile, pathlib, cityos
    >>> from cityos.model import DatasetSchema, ModelKind
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "a.csv").write_text("k,t,x,y\\nA,2026-03-02T08:00Z,116.4,39.9\\nB,never,1,2\\n")
    >>> city = cityos.open_city(d / "city")
    >>> _ = city.create_dataset("cars", DatasetSchema(ModelKind.POINT_ST))
    >>> r = load_file(city, "cars", d / "a.csv", id="k")
    >>> r.written, r.report.rejected
    (1, 1)
    """
    m, notes = file_mapping(store, dataset, path, **options)
    src = FileSource(
        path, m, incremental=False, batch_rows=batch_rows, name=f"load:{Path(path).resolve()}"
    )
    report = src.run(store, on_batch=on_batch)
    return FileLoad(report, notes, m.doc.read.delimiter)
