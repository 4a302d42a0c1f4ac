"""The demo's ingest step: the real Beijing air-quality CSVs (with station positions) and the
NYC 311 samples, read through the example mappings shipped in ``examples/``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cityos.ingest._files import FileSource
from cityos.ingest._mapping import Mapping
from cityos.ingest.errors import SourceError

if TYPE_CHECKING:
    from cityos.store import Store

__all__ = ["EXAMPLES_DIR", "demo_ingest", "example_mapping"]

#: Folder of the example mappings shipped with CityOS.
EXAMPLES_DIR = Path(__file__).parent / "examples"


def example_mapping(name: str, base_dir: str | Path | None = None) -> Mapping:
    """A shipped example mapping (``beijing_air_quality``, ``nyc311``,
    ``sensorthings_observations``), its relative paths resolved against ``base_dir``.

    Examples
    --------
    >>> example_mapping("nyc311").dataset
    'nyc311'
    """
    p = EXAMPLES_DIR / f"{name}.yaml"
    if not p.is_file():
        known = sorted(q.stem for q in EXAMPLES_DIR.glob("*.yaml"))
        raise SourceError(f"no example mapping {name!r}; shipped: {known}")
    return Mapping.from_file(p, base_dir=base_dir)


def demo_ingest(store: Store, shared_data_dir: str | Path) -> list[str]:
    """Ingest the Beijing air-quality readings and the NYC 311 samples into ``store``.

    Runs incrementally: a second call finds no new files. Returns one report line per dataset.

    Examples
    --------
    >>> import tempfile, cityos
    >>> from cityos.datasets import shared_data_dir
    >>> lines = demo_ingest(cityos.open_city(tempfile.mkdtemp()), shared_data_dir())  # doctest: +SKIP
    """
    root = Path(shared_data_dir)
    lines: list[str] = []
    for name, folder in (("beijing_air_quality", "beijing-air-quality"), ("nyc311", "nyc-311")):
        d = root / folder
        if not d.is_dir():
            raise SourceError(
                f"{d} is missing; point shared_data_dir at the folder holding {folder}/"
            )
        m = example_mapping(name, base_dir=d)
        report = FileSource(d, m, name=f"demo:{folder}").run(store)
        lines += report.lines() or [f"{m.dataset}: no new files in {d}"]
    return lines
