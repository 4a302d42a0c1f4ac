"""The shared loop: bad records never stop good ones (even beyond the store's per-error
problem cap), files are picked up incrementally, every file format reads."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from typer.testing import CliRunner

from cityos.ingest import DeadLetters, FileSource, Mapping, lineage
from cityos.store import Store

from .builders import READINGS_MAPPING

GEO_MAPPING = {
    "dataset": {"name": "pois", "model": "point_static"},
    "id": {"from": "name"},
    "geometry": {"wkb": "geometry", "crs": "EPSG:3857"},
    "fields": {"kind": {"type": "string"}},
}


def test_thousands_of_bad_rows_do_not_stop_the_good_ones(city: Store, tmp_path: Path) -> None:
    n = 6000
    df = pd.DataFrame(
        {
            "sensor": [f"s{i % 7}" for i in range(n)],
            "ts": pd.date_range("2026-03-01", periods=n, freq="min").strftime("%Y-%m-%d %H:%M"),
            "lon": 116.4,
            "lat": [95.0 if i % 3 == 0 else 39.9 for i in range(n)],
            "pm25_mg": 0.01,
        }
    )
    df.to_csv(tmp_path / "a.csv", index=False)
    rep = FileSource(tmp_path / "a.csv", Mapping.from_dict(READINGS_MAPPING)).run(city)
    assert (rep.accepted, rep.rejected) == (
        4000,
        2000,
    )  # 2,000 > the store's 1,000 problems per error
    assert len(city.scan("readings")) == 4000
    assert len(DeadLetters(city).list(limit=None)) == 2000
    [ln] = lineage(city, "readings")
    assert (ln.accepted, ln.rejected) == (4000, 2000)


def test_incremental_folder_picks_up_only_new_files(city: Store, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    m = Mapping.from_dict(READINGS_MAPPING)
    row = "sensor,ts,lon,lat,pm25_mg\n{},2026-03-02 08:00,116.4,39.9,0.02\n"
    (inbox / "1.csv").write_text(row.format("a"))
    assert FileSource(inbox, m).run(city).received == 1
    (inbox / "2.csv").write_text(row.format("b"))
    assert FileSource(inbox, m).run(city).received == 1  # only the new file
    assert FileSource(inbox, m).run(city).received == 0
    assert FileSource(inbox, m, incremental=False).run(city).datasets["readings"].duplicates == 2


@pytest.mark.parametrize("ext", ["geojson", "gpkg", "shp", "parquet"])
def test_spatial_formats(city: Store, tmp_path: Path, ext: str) -> None:
    g = gpd.GeoDataFrame(
        {"name": ["a", "b"], "kind": ["school", "park"]},
        geometry=[shapely.Point(12957468.0, 4852834.0), shapely.Point(12958000.0, 4853000.0)],
        crs="EPSG:3857",
    )
    p = tmp_path / f"pois.{ext}"
    if ext == "parquet":
        g.to_parquet(p)
    else:
        g.to_file(p)
    rep = FileSource(p, Mapping.from_dict(GEO_MAPPING)).run(city)
    assert rep.accepted == 2
    df = city.scan("pois").to_pandas().sort_values("id")
    assert df["kind"].tolist() == ["school", "park"]
    from cityos.ingest import transform_coords

    x, y = transform_coords(12957468.0, 4852834.0, "EPSG:3857", "EPSG:4326")
    assert (df["x"].iloc[0], df["y"].iloc[0]) == pytest.approx((float(x), float(y)), abs=1e-6)


def test_jsonl_bad_lines_are_dead_lettered(city: Store, tmp_path: Path) -> None:
    p = tmp_path / "r.jsonl"
    good = {"sensor": "a", "ts": "2026-03-02 08:00", "lon": 116.4, "lat": 39.9, "pm25_mg": 0.02}
    p.write_text(json.dumps(good) + "\n{not json\n[1, 2]\n")
    rep = FileSource(p, Mapping.from_dict(READINGS_MAPPING)).run(city)
    assert (rep.accepted, rep.rejected) == (1, 2)
    rules = sorted(d.rule for d in DeadLetters(city).list())
    assert rules == ["jsonl.object", "jsonl.syntax"]
    assert any(d.position.endswith(":line 2") for d in DeadLetters(city).list())


def test_cli_ingest_and_deadletters(tmp_path: Path) -> None:
    import typer

    from cityos.ingest.cli import register

    app = typer.Typer()
    register(app)
    mp = tmp_path / "m.json"
    mp.write_text(json.dumps(READINGS_MAPPING))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text(
        "sensor,ts,lon,lat,pm25_mg\na,2026-03-02 08:00,116.4,95,0.02\n"
    )
    home = str(tmp_path / "city")
    run = CliRunner().invoke
    r = run(app, ["ingest", "files", str(tmp_path / "in"), "-m", str(mp), "--home", home])
    assert r.exit_code == 0, r.output
    assert "1 dead-lettered" in r.output
    r = run(app, ["deadletters", "list", "--home", home, "--json"])
    d = json.loads(r.output.splitlines()[0])
    assert d["rule"].startswith("y:")
    assert (
        run(
            app, ["deadletters", "fix", str(d["id"]), "--set", "lat=39.9", "--home", home]
        ).exit_code
        == 0
    )
    r = run(app, ["deadletters", "replay", "--home", home])
    assert "1 replayed, 0 still failing" in r.output
    r = run(app, ["ingest", "lineage", "readings", "--home", home])
    assert "replay" in r.output and "accepted=1" in r.output
