"""A served demo city for the dashboard's browser tests, and Debian's Chromium driven by
Playwright (never a downloaded browser) with software WebGL (SwiftShader).

The city is the demo's own, small: the Sense chapter's synthetic city and fleet, the Learn
chapter's deployed forecaster scoring into a predictions dataset, and the twin's road
speeds, data rights and logins; served by uvicorn on loopback for the whole session.
Screenshots go to ``test-artifacts/browser/`` (or ``$CITYOS_ARTIFACTS``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import require

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]
LOGINS = {"commander": "commander-pass-1", "citizen": "citizen-pass-1"}
VIEWPORT = {"width": 1400, "height": 860}


@dataclass
class TwinCity:
    url: str
    store: Any
    served: Any

    def token(self, user: str) -> str:
        r = httpx.post(f"{self.url}/auth/token", data={"username": user, "password": LOGINS[user]})
        r.raise_for_status()
        return str(r.json()["access_token"])

    def api(self, user: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token(user)}"}, timeout=60
        )


@pytest.fixture(scope="session")
def twin_city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwinCity]:
    from cityos import access
    from cityos.demo import DemoContext, DemoReport, run_story
    from cityos.demo._city import Sense
    from cityos.demo._learn import Learn
    from cityos.demo._see import add_road_speeds, prepare_twin, seed_governance, serve_in_thread

    access.configure_password_hashing(time_cost=1, memory_cost_kib=8, parallelism=1)
    home = tmp_path_factory.mktemp("twin-city")
    ctx = DemoContext(
        home=home,
        report=DemoReport(home=home),
        vehicles=40,
        days=2,
        shared_data=home / "no-real-data",
        log=lambda m: None,
    )
    run_story((Sense, Learn), ctx)
    store = ctx.require_store()
    add_road_speeds(store, log=lambda m: None)
    seed_governance(store)
    prepare_twin(store, passwords=dict(LOGINS))
    served = serve_in_thread(store)
    yield TwinCity(served.url, store, served)
    served.stop()
    store.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    require(Path(CHROMIUM).is_file(), f"Debian's Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover
        require(False, "the playwright Python package (pip install playwright)")
        raise
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    d = Path(os.environ.get("CITYOS_ARTIFACTS", "test-artifacts")) / "browser"
    d.mkdir(parents=True, exist_ok=True)
    return d


class Dashboard:
    """One logged-in page of the dashboard."""

    def __init__(self, page: Any, city: TwinCity) -> None:
        self.page = page
        self.city = city
        self.errors: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.requests: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))

    def login(self, user: str = "commander") -> Dashboard:
        p = self.page
        p.goto(self.city.url + "/")
        p.fill("#username", user)
        p.fill("#password", LOGINS[user])
        p.click("#login-button")
        p.wait_for_selector("body[data-ready='1']", timeout=90_000)
        return self

    def js(self, expr: str, arg: Any = None) -> Any:
        return self.page.evaluate(expr, arg)

    def layer_ids(self) -> list[str]:
        return list(self.js("window.twin.layerIds()"))

    def pixel(self, lon: float, lat: float, r: int = 2) -> tuple[int, int, int]:
        """The mean colour of the screen around a map coordinate (from a screenshot)."""
        import io

        import numpy as np
        from PIL import Image

        x, y = self.js("([a, b]) => window.twin.project(a, b)", [lon, lat])
        img = np.asarray(Image.open(io.BytesIO(self.page.screenshot())).convert("RGB"))
        x, y = round(x), round(y)
        patch = img[y - r : y + r + 1, x - r : x + r + 1].reshape(-1, 3).mean(axis=0)
        return (int(patch[0]), int(patch[1]), int(patch[2]))

    def settle(self, ms: int = 400) -> None:
        self.page.wait_for_timeout(ms)


@pytest.fixture
def dashboard(browser: Any, twin_city: TwinCity) -> Iterator[Any]:
    ctx = browser.new_context(viewport=VIEWPORT)
    made: list[Dashboard] = []

    def open_page() -> Dashboard:
        d = Dashboard(ctx.new_page(), twin_city)
        made.append(d)
        return d

    yield open_page
    errors = [e for d in made for e in d.errors]
    ctx.close()
    assert not errors, f"page errors: {errors}"
