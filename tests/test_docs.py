"""The user guide builds as a static site (MkDocs Material, strict: no broken links or
missing pages); its examples run as doctests (``--doctest-glob='*.md'`` over docs/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_every_guide_page_is_in_the_nav_and_has_runnable_examples() -> None:
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    pages = {next(iter(item.values())) for item in nav}
    assert pages == {p.name for p in (ROOT / "docs").glob("*.md")}
    for page in ("index.md", "models.md", "mappings.md", "cookbook.md", "operations.md"):
        assert ">>> " in (ROOT / "docs" / page).read_text(), page


def test_mapping_reference_documents_every_key() -> None:
    from cityos.ingest._mapping import (
        DatasetSpec,
        FieldSpec,
        GeometrySpec,
        IdSpec,
        JoinSpec,
        MappingDoc,
        ReadSpec,
        TimeSpec,
    )

    text = (ROOT / "docs" / "mappings.md").read_text()
    for spec in (
        MappingDoc,
        DatasetSpec,
        ReadSpec,
        JoinSpec,
        IdSpec,
        TimeSpec,
        GeometrySpec,
        FieldSpec,
    ):
        for name, f in spec.model_fields.items():
            key = f.alias or name
            assert f"{key}:" in text or f'"{key}"' in text, f"{spec.__name__}.{key} undocumented"


def test_site_builds_strict(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "mappings" / "index.html").is_file()
