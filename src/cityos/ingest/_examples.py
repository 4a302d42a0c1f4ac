"""The example mappings shipped with CityOS (``examples/``): the real Beijing air-quality
CSVs (with station positions), the NYC 311 samples and SensorThings observations."""

from __future__ import annotations

from pathlib import Path

from cityos.ingest._mapping import Mapping
from cityos.ingest.errors import SourceError

__all__ = ["EXAMPLES_DIR", "example_mapping"]

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
