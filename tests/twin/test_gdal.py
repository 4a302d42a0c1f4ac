"""GIS clients read the city as they read any OGC API – Features service: GDAL's OAPIF
driver (the GDAL inside pyogrio) pages through a dataset over real HTTP, with a bearer
token, and gets back exactly the rows the store holds, masked as the API masks them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyogrio
import pytest
from tests.server.conftest import build_city, point_rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_SERVE = """
import sys, uvicorn
from cityos.config import Settings
from cityos.server import create_app
from tests.server.conftest import SECRET
home, port = sys.argv[1], int(sys.argv[2])
s = Settings(home=home, database_url=f"sqlite:///{home}/cityos.db", secret_key=SECRET)
uvicorn.run(create_app(s), host="127.0.0.1", port=port, log_level="warning")
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, object]]:
    # GDAL holds the GIL while it waits for HTTP: the server runs in its own process
    home: Path = tmp_path_factory.mktemp("gdal")
    city = build_city(home, f"sqlite:///{home / 'cityos.db'}")
    port = _free_port()
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    proc = subprocess.Popen([sys.executable, "-c", _SERVE, str(home), str(port)], env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield url, city
    finally:
        proc.terminate()
        proc.wait(10)
        city.client.close()
        city.store.close()


def _bearer(token: str | None) -> None:
    """GDAL sends ``Authorization: Bearer <token>`` on every request (GDAL >= 3.9)."""
    pyogrio.set_gdal_config_options(
        {"GDAL_HTTP_AUTH": "BEARER" if token else None, "GDAL_HTTP_BEARER": token}
    )


def test_gdal_reads_a_dataset_back_exactly(live: tuple[str, object]) -> None:
    url, city = live
    token = city.tokens["admin"]  # type: ignore[attr-defined]
    # page size 15 over 40 rows: GDAL must follow the next links
    _bearer(token)
    try:
        df = pyogrio.read_dataframe(f"OAPIF:{url}/ogc", layer="pts_public", PAGE_SIZE="15")
        stored = city.store.read("pts_public").to_pandas()  # type: ignore[attr-defined]
    finally:
        _bearer(None)
    assert len(df) == len(stored) == 40
    got = df.assign(x=df.geometry.x, y=df.geometry.y)
    got["t"] = pd.to_datetime(got["t"], utc=True)
    cols = ["id", "t", "x", "y", "phone", "owner", "district"]
    a = got[cols].sort_values(["id", "t"]).reset_index(drop=True)
    b = stored[cols].sort_values(["id", "t"]).reset_index(drop=True)
    b["t"] = b["t"].dt.tz_convert("UTC")
    pd.testing.assert_frame_equal(a, b, check_dtype=False, check_exact=True)


def test_gdal_gets_personal_fields_masked_as_the_api_masks_them(live: tuple[str, object]) -> None:
    url, city = live
    _bearer(city.tokens["reader"])  # type: ignore[attr-defined]
    try:
        df = pyogrio.read_dataframe(f"OAPIF:{url}/ogc", layer="pts_sensitive")
    finally:
        _bearer(None)
    api = city.client.post(  # type: ignore[attr-defined]
        "/datasets/pts_sensitive/query/range",
        json={"region": {"bbox": [116.0, 39.0, 117.0, 41.0]}},
        params={"limit": 1000},
        headers=city.auth("reader"),  # type: ignore[attr-defined]
    ).json()["rows"]
    assert len(df) == len(api) == 40
    assert not set(df["phone"]) & {p["phone"] for p in point_rows()}
    assert sorted(df["phone"]) == sorted(r["phone"] for r in api)


def test_gdal_bbox_filter_and_refusal(live: tuple[str, object]) -> None:
    url, city = live
    tokens = city.tokens  # type: ignore[attr-defined]
    _bearer(tokens["admin"])
    try:
        df = pyogrio.read_dataframe(
            f"OAPIF:{url}/ogc", layer="pts_public", bbox=(116.30, 39.90, 116.36, 39.93)
        )
    finally:
        _bearer(None)
    assert 0 < len(df) < 40 and df.geometry.x.max() <= 116.36
    _bearer(tokens["outsider"])
    try:
        names = [n for n, _ in pyogrio.list_layers(f"OAPIF:{url}/ogc")]
    finally:
        _bearer(None)
    assert "pts_public" in names and "pts_secret" not in names
