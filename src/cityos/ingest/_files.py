"""File sources: CSV, JSON Lines, GeoJSON, Parquet/GeoParquet, GeoPackage and Shapefile, one
file or a whole folder, with an incremental mode that picks up only new or changed files."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from cityos.ingest._base import Batch, Part, Rejected, Source, SourceContext
from cityos.ingest._mapping import Mapped, Mapping
from cityos.ingest.errors import SourceError

__all__ = ["FORMATS", "FileSource", "detect_delimiter", "file_columns", "read_file"]

#: file extension -> format
FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".geojson": "geojson",
    ".json": "geojson",
    ".parquet": "parquet",
    ".geoparquet": "parquet",
    ".gpkg": "gpkg",
    ".shp": "shp",
}


#: delimiters :func:`detect_delimiter` chooses from
DELIMITERS = (",", ";", "\t", "|")


def _format_of(path: Path, fmt: str | None) -> str | None:
    return fmt or FORMATS.get(path.suffix.lower())


def _format_or_fail(p: Path, fmt: str | None) -> str:
    f = _format_of(p, fmt)
    if f is None:
        raise SourceError(
            f"cannot tell the format of {p}; pass format= (one of {sorted(set(FORMATS.values()))})"
        )
    return f


def detect_delimiter(path: str | Path, encoding: str = "utf8") -> str:
    """The field delimiter of a CSV file, from its header line: the most frequent of
    :data:`DELIMITERS` outside quotes (``,`` when none occurs; tab for ``.tsv``).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.csv"
    >>> _ = p.write_text('id;"name, full";v\\n1;"a, b";2\\n')
    >>> detect_delimiter(p)
    ';'
    """
    p = Path(path)
    if p.suffix.lower() == ".tsv":
        return "\t"
    try:
        with open(p, encoding=encoding, errors="replace", newline="") as fh:
            header = fh.readline(1 << 16)
    except OSError as e:
        raise SourceError(f"cannot read {p}: {e}") from e
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for ch in header:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(DELIMITERS, key=lambda d: counts[d])  # ties keep the earlier (",")
    return best if counts[best] else ","


def file_columns(
    path: str | Path,
    fmt: str | None = None,
    *,
    delimiter: str | None = None,
    encoding: str = "utf8",
    layer: str | None = None,
) -> list[str]:
    """The column names of a file, read from its header or metadata only.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.csv"
    >>> _ = p.write_text("id,t,x,y\\n1,2026-01-01,1,2\\n")
    >>> file_columns(p)
    ['id', 't', 'x', 'y']
    """
    p = Path(path)
    f = _format_or_fail(p, fmt)
    if not p.is_file():
        raise SourceError(f"{p} does not exist; give a file")
    if f == "csv":
        import pyarrow.csv as pacsv

        _check_not_empty(p)
        try:
            with pacsv.open_csv(
                p,
                read_options=pacsv.ReadOptions(encoding=encoding, block_size=1 << 16),
                parse_options=pacsv.ParseOptions(delimiter=delimiter or detect_delimiter(p)),
            ) as r:
                return list(r.schema.names)
        except (pa.ArrowInvalid, OSError) as e:
            raise SourceError(f"cannot read the header of CSV {p}: {_first_line(e)}") from e
    if f == "parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(p).names)
        except (pa.ArrowInvalid, OSError) as e:
            raise SourceError(f"cannot read Parquet {p}: {_first_line(e)}") from e
    if f == "jsonl":
        with open(p, encoding="utf8") as fh:
            for line in fh:
                if line.strip():
                    try:
                        v = json.loads(line)
                    except ValueError as e:
                        raise SourceError(f"{p}: the first line is not JSON: {e}") from e
                    return list(v) if isinstance(v, dict) else []
        return []
    try:
        import pyogrio
    except ImportError as e:  # pragma: no cover - optional dependency
        from cityos.errors import MissingDependency

        raise MissingDependency(
            "pyogrio", "reading GeoJSON, GeoPackage and Shapefile", "files"
        ) from e
    try:
        info = pyogrio.read_info(p, layer=layer)
    except Exception as e:  # pyogrio raises DataSourceError and friends
        raise SourceError(f"cannot read {p} through GDAL: {_first_line(e)}") from e
    return [*(str(c) for c in info["fields"]), "geometry"]


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _check_not_empty(p: Path) -> None:
    try:
        empty = p.stat().st_size == 0
    except OSError as e:
        raise SourceError(f"cannot read {p}: {e}") from e
    if empty:
        raise SourceError(f"{p} is empty; a CSV file needs a header line naming its columns")


def read_file(
    path: str | Path,
    fmt: str | None = None,
    *,
    batch_rows: int = 1_000_000,
    null_values: Sequence[str] = ("", "NA", "N/A", "NaN", "null", "NULL"),
    delimiter: str | None = None,
    encoding: str = "utf8",
    layer: str | None = None,
    columns: Sequence[str] | None = None,
    text_columns: Sequence[str] = (),
) -> Iterator[tuple[pa.Table | list[dict[str, Any]], int, list[Rejected]]]:
    """Read a file in chunks: ``(records, offset of the first row, undecodable lines)``.

    Spatial formats go through pyogrio; their geometry arrives as WKB in ``geometry``.
    CSV files use ``delimiter``, detected from the header line when None
    (:func:`detect_delimiter`). ``columns`` reads only those columns (CSV and Parquet).
    ``text_columns`` (CSV) are read as text whatever they look like, so an id or a postcode
    such as ``007`` keeps its leading zeros (a missing one is ignored).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.csv"
    >>> _ = p.write_text("id,v\\n1,2\\n3,NA\\n")
    >>> [(t.num_rows, off) for t, off, _ in read_file(p)]
    [(2, 0)]
    """
    p = Path(path)
    f = _format_or_fail(p, fmt)
    if f == "csv":
        _check_not_empty(p)
        if delimiter is None:
            delimiter = detect_delimiter(p, encoding)
        yield from _read_csv(
            p, batch_rows, list(null_values), delimiter, encoding, columns, text_columns
        )
    elif f == "jsonl":
        yield from _read_jsonl(p, batch_rows)
    elif f == "parquet":
        import pyarrow.parquet as pq

        off = 0
        try:
            pf = pq.ParquetFile(p)
        except (pa.ArrowInvalid, OSError) as e:
            raise SourceError(f"cannot read Parquet {p}: {_first_line(e)}") from e
        cols = None if columns is None else [c for c in columns if c in pf.schema_arrow.names]
        for rb in pf.iter_batches(batch_size=batch_rows, columns=cols):
            tbl = pa.Table.from_batches([rb])
            yield tbl, off, []
            off += tbl.num_rows
    else:
        yield from _read_ogr(p, batch_rows, layer)


def _read_csv(
    p: Path,
    batch_rows: int,
    null_values: list[str],
    delimiter: str,
    encoding: str,
    columns: Sequence[str] | None = None,
    text_columns: Sequence[str] = (),
) -> Iterator[tuple[pa.Table, int, list[Rejected]]]:
    import pyarrow.csv as pacsv

    bad: list[Rejected] = []

    def invalid(row: Any) -> str:
        # a line with the wrong number of fields: dead-letter it, keep reading
        bad.append(
            Rejected(
                f"{p}:line {row.number}" if row.number is not None else str(p),
                {"line": row.text},
                "csv.columns",
                f"expected {row.expected_columns} fields, found {row.actual_columns}",
            )
        )
        return "skip"

    try:
        tbl = pacsv.read_csv(
            p,
            read_options=pacsv.ReadOptions(encoding=encoding, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=invalid),
            convert_options=pacsv.ConvertOptions(
                null_values=null_values,
                strings_can_be_null=True,
                include_columns=list(columns) if columns is not None else None,
                include_missing_columns=columns is not None,
                column_types=dict.fromkeys(text_columns, pa.string()),
            ),
        )
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as e:
        raise SourceError(
            f"cannot read CSV {p}: {_first_line(e)} (is it a {delimiter!r}-separated "
            f"{encoding} text file? set read.delimiter / read.encoding)"
        ) from e
    yield from _chunks(tbl, batch_rows, bad)


def _chunks(
    tbl: pa.Table, batch_rows: int, bad: list[Rejected]
) -> Iterator[tuple[pa.Table, int, list[Rejected]]]:
    if tbl.num_rows == 0:
        yield tbl, 0, bad
        return
    for off in range(0, tbl.num_rows, batch_rows):
        yield tbl.slice(off, batch_rows), off, bad if off == 0 else []


def _read_jsonl(
    p: Path, batch_rows: int
) -> Iterator[tuple[list[dict[str, Any]], int, list[Rejected]]]:
    recs: list[dict[str, Any]] = []
    bad: list[Rejected] = []
    off = 0
    with open(p, encoding="utf8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                v = json.loads(line)
            except ValueError as e:
                bad.append(
                    Rejected(
                        f"{p}:line {lineno}", line.rstrip("\n"), "jsonl.syntax", f"not JSON: {e}"
                    )
                )
                continue
            if not isinstance(v, dict):
                bad.append(
                    Rejected(
                        f"{p}:line {lineno}", v, "jsonl.object", "a line must hold a JSON object"
                    )
                )
                continue
            recs.append(v)
            if len(recs) >= batch_rows:
                yield recs, off, bad
                off += len(recs)
                recs, bad = [], []
    yield recs, off, bad


def _read_ogr(
    p: Path, batch_rows: int, layer: str | None
) -> Iterator[tuple[pa.Table, int, list[Rejected]]]:
    try:
        import pyogrio
    except ImportError as e:  # pragma: no cover - optional dependency
        from cityos.errors import MissingDependency

        raise MissingDependency(
            "pyogrio", "reading GeoJSON, GeoPackage and Shapefile", "files"
        ) from e
    try:
        meta, tbl = pyogrio.read_arrow(p, layer=layer)
    except Exception as e:  # pyogrio raises DataSourceError and friends
        raise SourceError(f"cannot read {p} through GDAL: {e}") from e
    gname = meta.get("geometry_name") or "wkb_geometry"
    if gname in tbl.column_names and gname != "geometry":
        tbl = tbl.rename_columns(["geometry" if c == gname else c for c in tbl.column_names])
    # GDAL tags WKB as an extension type; plain binary is what the mapping reads
    cols = [
        c.cast(pa.binary())
        if c.type.id == pa.binary().id or isinstance(c.type, pa.ExtensionType)
        else c
        for c in (tbl[n] for n in tbl.column_names)
    ]
    tbl = pa.table(dict(zip(tbl.column_names, cols, strict=True)))
    yield from _chunks(tbl, batch_rows, [])


class FileSource(Source):
    """Ingest a file or every matching file in a folder.

    Parameters
    ----------
    path:
        A file or a folder (searched recursively).
    mapping:
        How records map to the dataset; its ``read`` section gives format, file pattern and
        null values.
    incremental:
        Skip files already ingested by this source (same path, size and modification time);
        which files were ingested is remembered in the city's database.
    batch_rows:
        Rows per append; small files are combined into one batch.

    Examples
    --------
    >>> import tempfile, pathlib, cityos
    >>> d = pathlib.Path(tempfile.mkdtemp()); (d / "in").mkdir()
    >>> _ = (d / "in" / "a.csv").write_text("k,t,lon,lat\\nA,2026-01-01,1,2\\n")
    >>> m = Mapping.from_dict({"dataset": {"name": "pts", "model": "point_st"}, "id": {"from": "k"},
    ...     "time": {"from": "t"}, "geometry": {"x": "lon", "y": "lat"}})
    >>> city = cityos.open_city(d / "city")
    >>> FileSource(d / "in", m).run(city).accepted, FileSource(d / "in", m).run(city).received
    (1, 0)
    """

    kind = "files"
    prefetch = True  # parse and map the next file while the previous batch is appended

    def __init__(
        self,
        path: str | Path,
        mapping: Mapping,
        *,
        incremental: bool = True,
        pattern: str | None = None,
        format: str | None = None,
        batch_rows: int = 1_000_000,
        name: str | None = None,
    ) -> None:
        self.path = Path(path).expanduser().resolve()
        self.mapping = mapping
        self.incremental = incremental
        self.pattern = pattern or mapping.doc.read.pattern
        self.format = format or mapping.doc.read.format
        self.batch_rows = batch_rows
        super().__init__(mapping, name=name or f"files:{self.path}")

    def files(self) -> list[Path]:
        """The files this source reads, in name order."""
        if self.path.is_file():
            return [self.path]
        if not self.path.is_dir():
            raise SourceError(f"{self.path} does not exist; give a file or a folder")
        if self.pattern:
            found = self.path.rglob(self.pattern)
        else:
            found = (q for q in self.path.rglob("*") if _format_of(q, self.format) is not None)
        return sorted(q for q in found if q.is_file() and not q.name.startswith("."))

    def _todo(self, ctx: SourceContext) -> list[Path]:
        fs = self.files()
        if self.incremental:
            fs = [f for f in fs if not ctx.state.file_done(self.name, f)]
        return fs

    def total(self, ctx: SourceContext) -> int | None:
        return sum(f.stat().st_size for f in self._todo(ctx))

    def _chunks(
        self, f: Path
    ) -> Iterator[tuple[pa.Table | list[dict[str, Any]], int, list[Rejected]]]:
        rs = self.mapping.doc.read
        return read_file(
            f,
            self.format,
            batch_rows=self.batch_rows,
            null_values=rs.null_values,
            delimiter=rs.delimiter,
            encoding=rs.encoding,
            layer=rs.layer,
            columns=rs.columns,
            text_columns=self.mapping.text_sources(),
        )

    def mapped(self) -> Iterator[tuple[Path, int, Mapped, list[Rejected]]]:
        """Read and map every file without a store: ``(file, offset of the chunk's first
        row, the mapped chunk, the lines the parser could not decode)``. The same parser
        and mapping as :meth:`run`, for callers that want the mapped records themselves
        (the :mod:`cityos.datasets` loaders); nothing is validated against or written to a
        store, and no dead letters or lineage are recorded."""
        for f in self.files():
            for recs, off, bad in self._chunks(f):
                yield f, off, self.mapping.apply(recs), bad

    def read(self, ctx: SourceContext) -> Iterator[Batch]:
        parts: list[Part] = []
        rejected: list[Rejected] = []
        done: list[tuple[Path, int]] = []
        rows = 0
        progress = 0

        def flush() -> Batch:
            finished = list(done)

            def mark() -> None:
                for f, n in finished:
                    ctx.state.mark_file(self.name, f, n)

            b = Batch(self.mapping.dataset, list(parts), list(rejected), mark, progress)
            parts.clear()
            rejected.clear()
            done.clear()
            return b

        for f in self._todo(ctx):
            if ctx.stopping:
                break
            n_file = 0
            for recs, off, bad in self._chunks(f):
                part = Part(recs, str(f), off)
                parts.append(part)
                rejected.extend(bad)
                rows += len(part)
                n_file += len(part)
                if rows >= self.batch_rows:
                    yield flush()
                    rows = progress = 0
            done.append((f, n_file))
            progress += f.stat().st_size
        if parts or rejected or done:
            yield flush()
