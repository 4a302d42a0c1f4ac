"""The last chapter of the city story, *see and act*: the digital twin. Road speeds are
derived from the fleet's GPS feed, the datasets get their data rights (public basemap,
internal fleet), a commander and a citizen get logins, and the dashboard is served by the
CityOS API on loopback; the chapter checks through HTTP what each of them may see, and the
demo ends by serving it (``cityos demo`` prints the URL and the logins; ``--no-serve``
finishes instead, for CI)."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from cityos.demo._story import Chapter, DemoContext, Section

__all__ = ["SeeAndAct", "Served", "prepare_twin", "serve_in_thread"]

#: Roles of the governance contract (CONTRACTS.md); created here when missing.
ROLES = ("citizen", "dispatcher", "department_staff", "grid_worker", "supervisor")
PUBLIC = (
    "districts",
    "roads",
    "water",
    "pois",
    "sensor_readings",
    "beijing_air_quality",
    "beijing_stations",
)


def _first_morning(t_min: pd.Timestamp, t_max: pd.Timestamp) -> pd.Timestamp:
    """The first 00:00 UTC in the data (08:00 in Beijing), the dashboard's default hour."""
    day = t_min.ceil("1D")
    return day if day + pd.Timedelta("1h") <= t_max else t_max - pd.Timedelta("1h")


def add_road_speeds(store: Any, *, hours: float = 3.0, log: Any = print) -> int:
    """Write ``road_speeds`` (NETWORK_SERIES over ``roads``): mean speed per segment per
    15 minutes from the ``vehicles`` feed, from an hour before the first morning on."""
    from cityos.model import DatasetSchema, Field, ModelKind
    from cityos.twin._flows import road_speeds

    names = {d.name for d in store.list_datasets()}
    if "road_speeds" in names or not {"vehicles", "roads"} <= names:
        return 0
    info = store.describe("vehicles")
    d = info.to_dict()
    t0 = _first_morning(pd.Timestamp(d["t_min"]), pd.Timestamp(d["t_max"])) - pd.Timedelta("1h")
    pts = store.scan(
        "vehicles",
        start=t0,
        end=t0 + pd.Timedelta(hours=hours),
    ).table
    pts = pts.select([c for c in ("t", "x", "y", "speed_kmh") if c in pts.column_names]).to_pandas()
    roads = store.scan("roads").table.select(["id", "geometry"]).to_pandas()
    log(f"deriving road speeds from {len(pts):,} GPS fixes on {len(roads):,} segments ...")
    speeds = road_speeds(pts, roads, "15min")
    store.create_dataset(
        "road_speeds",
        DatasetSchema(
            ModelKind.NETWORK_SERIES,
            id_type=str(store.describe("roads").schema.id_type),
            network="roads",
            fields=(Field("speed_kmh", "float64", unit="km/h"), Field("n_points", "int64")),
            description="Mean speed per road segment per 15 minutes (from the fleet's GPS)",
        ),
        exist_ok=True,
    )
    store.append("road_speeds", speeds, source="cityos.twin")
    return len(speeds)


#: (service code, title) of the demo's citizen reports
REPORTS = (
    ("road", "Pothole in the right lane"),
    ("streetlight", "Street light out"),
    ("sanitation", "Overflowing bins"),
    ("noise", "Night-time construction noise"),
    ("water", "Water main leak"),
    ("parking", "Car parked on the pavement"),
    ("hazchem", "Chemical smell near the plant"),
)


def seed_governance(store: Any, *, events: int = 36, seed: int = 3) -> tuple[int, int]:
    """The governance state the map shows when the demo has no governance chapter yet: the
    organisation generated over the districts, citizen reports near the POIs (a third
    dispatched automatically, the rest waiting in the dispatcher's queue) and warnings
    of each severity. Returns (events, warnings) created; nothing when events exist."""
    import numpy as np

    from cityos.govern import Governance, generate_organisation

    names = {d.name for d in store.list_datasets()}
    if "events" in names and store.describe("events").rows:
        return 0, 0
    generate_organisation(store.db, store)
    gov = Governance(store.db, store)
    rng = np.random.default_rng(seed)
    pois = store.scan("pois").table
    px, py = pois["x"].to_numpy(), pois["y"].to_numpy()
    made = 0
    for i in range(events):
        k = int(rng.integers(len(px)))
        code, title = REPORTS[i % len(REPORTS)]
        gov.intake(
            code,
            x=float(px[k] + rng.normal(0, 0.002)),
            y=float(py[k] + rng.normal(0, 0.002)),
            title=title,
            description=f"{title} (demo report {i + 1})",
            priority=int(rng.integers(1, 5)),
            dedup=False,
            auto_dispatch=i % 3 == 0,
        )
        made += 1
    warned = 0
    for j, (sev, rule, kind) in enumerate(
        (
            ("critical", "hazchem_stay", "hazchem"),
            ("warning", "pm25_sustained", "air_quality"),
            ("warning", "crowd_inflow", "crowd"),
            ("info", "noise_level", "noise"),
        )
    ):
        k = int(rng.integers(len(px)))
        gov.raise_warning(
            rule,
            kind=kind,
            severity=sev,
            x=float(px[k]),
            y=float(py[k]),
            title=f"{rule} at POI {k}",
            evidence={"demo": True, "poi": k},
            dedup_key=f"demo-{j}",
        )
        warned += 1
    return made, warned


def prepare_twin(store: Any, *, passwords: dict[str, str] | None = None) -> dict[str, str]:
    """Data rights and logins for the dashboard: the basemap and sensors public, the rest
    internal to the traffic department; ``commander`` (supervisor and dispatcher, reads
    everything) and ``citizen`` (public datasets only). Returns ``{user: password}``."""
    from cityos import access

    db = store.db
    have = set(access.list_departments(db))
    for d in ("traffic", "environment", "public_safety"):
        if d not in have:
            access.create_department(db, d)
    for role in ROLES:
        if role not in access.list_roles(db):
            access.create_role(db, role)
    for info in store.list_datasets():
        public = info.name in PUBLIC or info.name.endswith("_forecast")
        access.set_dataset_policy(
            db, info.name, "public" if public else "internal", owner_department="traffic"
        )
    for role in ("supervisor", "dispatcher"):
        access.grant(db, role, "*", "read")
    logins = dict(passwords or {})
    users = {u.username for u in access.list_users(db)}
    people: tuple[tuple[str, list[str], str | None], ...] = (
        ("commander", ["supervisor", "dispatcher"], "traffic"),
        ("citizen", ["citizen"], None),
    )
    for user, roles, dept in people:
        pw = logins.setdefault(user, secrets.token_urlsafe(9))
        if user in users:
            access.set_password(db, user, pw)
        else:
            access.create_user(db, user, pw, roles=roles, department=dept, full_name=user.title())
    return logins


@dataclass
class Served:
    """A CityOS API (with the dashboard) running on a background thread."""

    url: str
    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free port on 127.0.0.1")


def serve_in_thread(store: Any, *, port: int = 0, host: str = "127.0.0.1") -> Served:
    """Serve the API for ``store`` on loopback in a daemon thread; returns once it answers."""
    import uvicorn

    from cityos.server import create_app

    app = create_app(store.settings, store=store)
    port = _free_port(port) if port else _free_port(0)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    th = threading.Thread(target=server.run, name="cityos-twin", daemon=True)
    th.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not th.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the API did not start on {host}:{port}")
        time.sleep(0.05)
    return Served(f"http://{host}:{port}", server, th)


class SeeAndAct(Chapter):
    """Chapter 7: the digital twin served on loopback, checked through HTTP."""

    title = "See and act: the digital twin"

    def run(self, ctx: DemoContext) -> None:
        import httpx

        from cityos.twin import static_dir

        store = ctx.require_store()
        n = add_road_speeds(store, log=ctx.log)
        ev, wn = seed_governance(store)
        if ev:
            ctx.log(f"seeding the dispatcher's desk: {ev} citizen reports, {wn} warnings ...")
        logins = prepare_twin(store, passwords=ctx.state.get("twin_logins"))
        ctx.state["twin_logins"] = logins
        served = serve_in_thread(store, port=8000 if ctx.serve else 0)
        ctx.state["twin_served"] = served
        sec = Section(
            "What each login sees on the map",
            ("user", "layers", "vehicles layer", "Arrow bytes", "ms"),
        )
        with httpx.Client(base_url=served.url, timeout=60) as c:
            page = c.get("/")
            for user, pw in logins.items():
                tok = c.post("/auth/token", data={"username": user, "password": pw})
                tok.raise_for_status()
                h = {"Authorization": f"Bearer {tok.json()['access_token']}"}
                layers = c.get("/twin/layers", headers=h).json()
                t0 = time.perf_counter()
                r = c.get(
                    "/twin/layers/vehicles.arrow",
                    params={"start": _hour(store)[0], "end": _hour(store)[1]},
                    headers=h,
                )
                ms = (time.perf_counter() - t0) * 1000
                rows = r.headers.get("X-Total-Count", "-") if r.status_code == 200 else "-"
                sec.rows.append(
                    (
                        user,
                        str(len(layers)),
                        f"{rows} rows" if r.status_code == 200 else f"HTTP {r.status_code}",
                        f"{len(r.content):,}" if r.status_code == 200 else "-",
                        f"{ms:.0f}",
                    )
                )
        ctx.report.sections.append(sec)
        built = (static_dir() / "index.html").is_file()
        ctx.report.notes.append(
            f"road_speeds: {n:,} segment-speed rows derived from the GPS feed"
            if n
            else "road_speeds: already present"
        )
        where = "is served" if ctx.serve else "answered (then stopped: --no-serve)"
        ctx.report.notes.append(
            f"the dashboard {where if built and page.status_code == 200 else 'is NOT built'} "
            f"at {served.url}/ (logins: " + ", ".join(f"{u} / {p}" for u, p in logins.items()) + ")"
        )
        if not ctx.serve:
            served.stop()


def _hour(store: Any) -> tuple[str, str]:
    d = store.describe("vehicles").to_dict()
    t = _first_morning(pd.Timestamp(d["t_min"]), pd.Timestamp(d["t_max"]))
    return t.isoformat(), (t + pd.Timedelta("1h")).isoformat()


def keep_serving(ctx: DemoContext, console: Any) -> None:
    """The demo's ending: keep the dashboard served until Ctrl-C."""
    served: Served | None = ctx.state.get("twin_served")
    if served is None:
        return
    logins = ctx.state.get("twin_logins", {})
    console.print(
        f"\n[bold green]The digital twin is served at {served.url}/[/]\n"
        + "".join(
            f"  log in as [bold]{u}[/] with password [bold]{p}[/]\n" for u, p in logins.items()
        )
        + "Press Ctrl-C to stop."
    )
    try:
        while served.thread.is_alive():
            served.thread.join(timeout=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        served.stop()
