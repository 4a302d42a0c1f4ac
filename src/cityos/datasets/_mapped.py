"""Run a loader's files through the ingest file parser and mapping engine, without a store."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from cityos.datasets._errors import DataSourceError
from cityos.errors import CityOSError
from cityos.ingest import FileSource, Mapping, RowProblem

__all__ = ["read_mapped"]


def read_mapped(name: str, path: Path, mapping: Mapping) -> tuple[pa.Table, list[RowProblem]]:
    """The mapped records of one local file (``name`` is how messages call it) and the
    mapping's problems, their ``row`` counted from the file's first record.

    Raises
    ------
    DataSourceError
        The file cannot be parsed, or a line has the wrong number of fields.
    """
    tables: list[pa.Table] = []
    problems: list[RowProblem] = []
    try:
        for _, off, mapped, bad in FileSource(path, mapping, incremental=False).mapped():
            if bad:
                where = bad[0].position.rsplit(":", 1)[-1]
                raise DataSourceError(f"{name} ({where}): {bad[0].message}")
            tables.append(mapped.table)
            problems += [RowProblem(p.row + off, p.rule, p.message) for p in mapped.problems]
    except DataSourceError:
        raise
    except CityOSError as exc:
        raise DataSourceError(f"{name}: {exc}") from exc
    if len(tables) == 1:
        return tables[0], problems
    return pa.concat_tables(tables), problems
