"""Chapter 6 of the city story, *share*: the environment bureau (pollutant readings and the
PM2.5 label) and the weather bureau (meteorology) of Beijing forecast tomorrow's PM2.5
together without pooling their data — two ``cityos gateway serve`` processes, each over its
own city home, talking mutual TLS, each driven by an operator of its own city (an access
API key; each action authorised for that user, each dataset by the user's rights); entity
alignment by private set intersection, SecureBoost with Paillier-encrypted gradients,
publishing the joint model to the environment bureau's AI registry (``cityos ai models``
lists it, with every party's data versions and the project and job as lineage), deploying
it there, batch inference and online serving through the registry's production version.

The figures it reports: the federated model's error equals pooled training's (the same
trees: SecureBoost is lossless), and beats the environment bureau alone (what federation is
worth). The demo uses 512-bit Paillier keys to stay within its one-minute budget on two
shared cores (stated in its output; far too small for real use); the library's default, and
every gateway job that does not ask otherwise, uses 2048 bits.

Entities are station-days ("Dongsi:2016-03-01"). Features are each day's means; the weather
bureau also holds the next day's observed meteorology, which stands in for its own forecast
of tomorrow (a weather bureau publishes forecasts; the demo has only observations).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cityos.demo._story import Chapter, DemoContext, Section

__all__ = ["ENV_FIELDS", "WEATHER_FIELDS", "Share", "beijing_bureaus", "run_share_story"]

#: The environment bureau's features (today's daily means) and its label.
ENV_FIELDS = ("pm25", "pm25_max", "pm10", "so2", "no2", "co", "o3")
LABEL = "pm25_next"
#: The weather bureau's features: today's meteorology and tomorrow's (its forecast).
WEATHER_FIELDS = (
    "temp",
    "pres",
    "dewp",
    "rain",
    "wspm",
    "temp_next",
    "pres_next",
    "dewp_next",
    "rain_next",
    "wspm_next",
)
STATIONS = ("Dongsi", "Huairou", "Tiantan", "Changping")
DEMO_PARAMS = {
    "n_trees": 12,
    "max_depth": 3,
    "learning_rate": 0.3,
    "max_bins": 32,
    "min_child_samples": 20,
    "key_bits": 512,
}
#: The joint model's name in the environment bureau's AI registry.
MODEL_NAME = "pm25-tomorrow"


def _daily(df: pd.DataFrame) -> pd.DataFrame:
    local = df["t"].dt.tz_convert("Asia/Shanghai")
    g = df.assign(day=local.dt.strftime("%Y-%m-%d")).groupby(["id", "day"])
    out = pd.DataFrame(
        {
            "pm25": g["PM2.5"].mean(),
            "pm25_max": g["PM2.5"].max(),
            "pm10": g["PM10"].mean(),
            "so2": g["SO2"].mean(),
            "no2": g["NO2"].mean(),
            "co": g["CO"].mean(),
            "o3": g["O3"].mean(),
            "temp": g["TEMP"].mean(),
            "pres": g["PRES"].mean(),
            "dewp": g["DEWP"].mean(),
            "rain": g["RAIN"].sum(),
            "wspm": g["WSPM"].mean(),
        }
    ).reset_index()
    return out


def _generated(
    days: int = 500, stations: tuple[str, ...] = STATIONS, seed: int = 7
) -> pd.DataFrame:
    """Daily station readings with Beijing-like dynamics (PM2.5 builds up on calm, humid
    days and is swept out by wind), for when the real data is absent."""
    rng = np.random.default_rng(seed)
    rows = []
    for s_i, st in enumerate(stations):
        pm = 60.0
        for d in range(days):
            day = (pd.Timestamp("2015-01-01") + pd.Timedelta(days=d)).strftime("%Y-%m-%d")
            season = np.cos(2 * np.pi * d / 365.0)
            temp = 13 - 15 * season + rng.normal(0, 3)
            wspm = max(0.2, rng.gamma(2.0, 1.0))
            dewp = temp - 8 - rng.gamma(2.0, 3.0)
            rain = rng.exponential(2.0) if rng.random() < 0.15 else 0.0
            pres = 1012 + 10 * season + rng.normal(0, 4)
            pm = max(
                3.0,
                0.55 * pm
                + 40
                + 25 * season
                - 14 * wspm
                + 1.2 * (dewp - temp + 10)
                - 3 * rain
                + rng.normal(0, 15)
                + 5 * s_i,
            )
            rows.append(
                {
                    "id": st,
                    "day": day,
                    "pm25": pm,
                    "pm25_max": pm * rng.uniform(1.2, 2),
                    "pm10": pm * rng.uniform(1.1, 1.6),
                    "so2": 5 + 10 * max(season, 0) + rng.gamma(2, 2),
                    "no2": 25 + 0.3 * pm + rng.normal(0, 6),
                    "co": 500 + 12 * pm + rng.normal(0, 90),
                    "o3": max(2.0, 60 - 40 * season - 0.2 * pm + rng.normal(0, 10)),
                    "temp": temp,
                    "pres": pres,
                    "dewp": dewp,
                    "rain": rain,
                    "wspm": wspm,
                }
            )
    return pd.DataFrame(rows)


def beijing_bureaus(
    shared_data: Path | None,
    *,
    stations: tuple[str, ...] = STATIONS,
    test_from: str = "2016-09-01",
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, str]:
    """The two bureaus' tables of station-days and the held-out truth.

    Returns ``(env, weather, truth, source)``: ``env`` has ``id``, :data:`ENV_FIELDS` and
    the label ``pm25_next`` (NaN on test days: the bureau does not train on them), ``weather``
    has ``id`` and :data:`WEATHER_FIELDS`; ``truth`` is tomorrow's PM2.5 of the test days.
    """
    folder = Path(shared_data) / "beijing-air-quality" if shared_data else None
    if folder is not None and folder.is_dir():
        from cityos.datasets import read_beijing_air_quality

        daily = _daily(read_beijing_air_quality(folder, stations=list(stations), positions=False))
        source = f"real Beijing readings ({len(stations)} stations, 2013-03..2017-02)"
    else:
        daily = _generated()
        test_from = str(sorted(daily["day"].unique())[int(daily["day"].nunique() * 0.75)])
        source = "generated station-days (the real Beijing data is absent)"
    daily = daily.sort_values(["id", "day"]).reset_index(drop=True)
    nxt = daily.groupby("id").shift(-1)
    consecutive = (pd.to_datetime(nxt["day"]) - pd.to_datetime(daily["day"])) == pd.Timedelta("1D")
    daily[LABEL] = nxt["pm25"].where(consecutive)
    for f in ("temp", "pres", "dewp", "rain", "wspm"):
        daily[f"{f}_next"] = nxt[f].where(consecutive)
    daily = daily[daily[LABEL].notna()].reset_index(drop=True)
    daily["id"] = daily["id"] + ":" + daily["day"]
    test = daily["day"] >= test_from
    truth = daily.loc[test].set_index("id")[LABEL]
    env = daily[["id", *ENV_FIELDS, LABEL]].copy()
    env.loc[test.to_numpy(), LABEL] = np.nan
    weather = daily[["id", *WEATHER_FIELDS]].copy()
    return env, weather, truth, source


def _make_home(home: Path, name: str, df: pd.DataFrame, description: str) -> None:
    from cityos.model import PlainTable
    from cityos.store import Store

    store = Store(home)
    try:
        fields = [c for c in df.columns if c != "id"]
        if name in {d.name for d in store.list_datasets()}:
            store.drop_dataset(name)
        store.create_dataset(name, PlainTable.schema(*fields), description=description)
        store.append(name, df)
    finally:
        store.close()


def run_share_story(
    root: Path,
    shared_data: Path | None,
    *,
    params: dict[str, Any] | None = None,
    log: Any = print,
    online_requests: int = 30,
) -> dict[str, Any]:
    """Run the Beijing story between two gateway processes under ``root``; the figures."""
    from cityos.ai._registry import ModelRegistry
    from cityos.federation import secureboost as sb
    from cityos.federation._certs import create_federation
    from cityos.federation.cli import GatewayClient
    from cityos.federation.gateway import make_operator
    from cityos.federation.gateway_procs import gateway_processes
    from cityos.store import Store

    p = dict(params or DEMO_PARAMS)
    env, weather, truth, source = beijing_bureaus(shared_data)
    root.mkdir(parents=True, exist_ok=True)
    certs, env_home, w_home = root / "certs", root / "environment", root / "weather"
    create_federation(certs, "beijing", ["environment", "weather"])
    _make_home(
        env_home, "air_daily", env, "daily pollutant means per station; label: tomorrow's PM2.5"
    )
    _make_home(w_home, "meteo_daily", weather, "daily meteorology per station, and tomorrow's")
    keys = {}
    # each bureau's operator may read its own bound dataset (and the environment bureau's
    # write the scores); nothing else, and no machine user reads on anyone's behalf
    for home, user, read, write in (
        (env_home, "zhang", ["air_daily"], ["pm25_tomorrow"]),
        (w_home, "wang", ["meteo_daily"], []),
    ):
        store = Store(home)
        try:
            keys[home] = make_operator(store.db, user, read=read, write=write)
        finally:
            store.close()
    log(f"two bureaus' homes from {source}: {len(env)} and {len(weather)} station-days")
    out: dict[str, Any] = {
        "source": source,
        "rows": len(env),
        "test_rows": len(truth),
        "key_bits": p["key_bits"],
    }
    t0 = time.perf_counter()
    with gateway_processes(certs, {"environment": env_home, "weather": w_home}):
        out["start_s"] = time.perf_counter() - t0
        ec = GatewayClient(env_home, api_key=keys[env_home])
        wc = GatewayClient(w_home, api_key=keys[w_home])
        proj = ec.call(
            "POST",
            "projects",
            {
                "name": "PM2.5 tomorrow",
                "hosts": ["weather"],
                "description": "next-day PM2.5 per station",
            },
        )
        pid = proj["id"]
        wc.call("POST", f"projects/{pid}/accept")
        ec.call(
            "POST",
            f"projects/{pid}/bind",
            {"dataset": "air_daily", "fields": list(ENV_FIELDS), "label": LABEL, "id_field": "id"},
        )
        wc.call(
            "POST",
            f"projects/{pid}/bind",
            {"dataset": "meteo_daily", "fields": list(WEATHER_FIELDS), "id_field": "id"},
        )
        wc.call(
            "POST",
            f"projects/{pid}/metadata",
            {
                "fields": {
                    "wspm": {"as": "wind_speed", "description": "daily mean wind speed, m/s"},
                    "wspm_next": {
                        "as": "wind_speed_forecast",
                        "description": "tomorrow's wind speed",
                    },
                }
            },
        )
        log("project created, accepted, datasets bound, metadata shared; training SecureBoost ...")
        t = time.perf_counter()
        job = ec.call("POST", f"projects/{pid}/train", {"algorithm": "secureboost", "params": p})
        while job["state"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(0.2)
            job = ec.call("GET", f"jobs/{job['id']}")
        if job["state"] != "succeeded":
            raise RuntimeError(f"federated training {job['state']}: {job['error']}")
        out["train_s"] = time.perf_counter() - t
        out["train_rows"] = job["result"]["rows"]
        out["guest_bytes_sent"] = job["result"].get("bytes_sent", 0)
        model = ec.call("POST", f"jobs/{job['id']}/publish", {"name": MODEL_NAME})
        # the joint model is a version of the environment bureau's AI registry: deploy it
        # there; serving below goes through its production version
        store = Store(env_home)
        try:
            reg = ModelRegistry.of(store)
            v = reg.deploy(MODEL_NAME, int(model["registry_version"]), actor="user:zhang")
            out["registry"] = {
                "name": v.name,
                "version": v.version,
                "family": v.family,
                "stage": v.stage,
                "datasets": {  # every bureau's data version, from the lineage
                    f"{party}:{x['dataset']}": x["version"]
                    for party, x in sorted((v.lineage or {}).get("parties", {}).items())
                },
                "project": (v.lineage or {}).get("project"),
                "job": (v.lineage or {}).get("job"),
                "home": str(env_home),
            }
        finally:
            store.close()
        store = Store(w_home)
        try:  # the weather bureau's own part, in its own registry
            out["host_registry"] = ModelRegistry.of(store).get(MODEL_NAME).to_dict()
        finally:
            store.close()
        served = f"{MODEL_NAME}:production"
        t = time.perf_counter()
        inf = ec.call("POST", f"models/{served}/infer", {"output": "pm25_tomorrow"})
        while inf["state"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(0.2)
            inf = ec.call("GET", f"jobs/{inf['id']}")
        if inf["state"] != "succeeded":
            raise RuntimeError(f"batch inference {inf['state']}: {inf['error']}")
        out["infer_s"] = time.perf_counter() - t
        test_ids = list(truth.index)
        lat = []
        for i in range(online_requests):
            t = time.perf_counter()
            ans = ec.call(
                "POST", f"models/{served}/predict", {"ids": [test_ids[i % len(test_ids)]]}
            )
            lat.append((time.perf_counter() - t) * 1000)
        out["online_p50_ms"] = float(np.percentile(lat, 50))
        out["online_p99_ms"] = float(np.percentile(lat, 99))
        out["online_last"] = ans["scores"][0]
        out["model"] = model["id"]
    store = Store(env_home)
    try:
        scores = store.read("pm25_tomorrow").table.to_pandas().set_index("id")["score"]
    finally:
        store.close()
    fed = scores.loc[truth.index].to_numpy()
    # the baselines, in the same run: pooled columns (what sharing raw rows would give) and
    # the environment bureau alone, with the same booster and parameters
    e, w = env.set_index("id"), weather.set_index("id")
    train_ids = sorted(e.index[e[LABEL].notna()].intersection(w.index))
    bp = sb.BoostParams(**p)
    pooled = sb.train_pooled(
        np.column_stack(
            [e.loc[train_ids, list(ENV_FIELDS)], w.loc[train_ids, list(WEATHER_FIELDS)]]
        ),
        e.loc[train_ids, LABEL].to_numpy(),
        bp,
    )
    pooled_pred = sb.predict_pooled(
        pooled,
        np.column_stack(
            [e.loc[truth.index, list(ENV_FIELDS)], w.loc[truth.index, list(WEATHER_FIELDS)]]
        ),
    )
    alone = sb.train_pooled(
        e.loc[train_ids, list(ENV_FIELDS)].to_numpy(), e.loc[train_ids, LABEL].to_numpy(), bp
    )
    alone_pred = sb.predict_pooled(alone, e.loc[truth.index, list(ENV_FIELDS)].to_numpy())
    y = truth.to_numpy()

    def rmse(v: np.ndarray) -> float:
        return float(np.sqrt(np.mean((v - y) ** 2)))

    def mae(v: np.ndarray) -> float:
        return float(np.mean(np.abs(v - y)))

    out.update(
        rmse_federated=rmse(fed),
        rmse_pooled=rmse(pooled_pred),
        rmse_env_alone=rmse(alone_pred),
        mae_federated=mae(fed),
        mae_pooled=mae(pooled_pred),
        mae_env_alone=mae(alone_pred),
        identical_to_pooled=bool(np.array_equal(fed, pooled_pred)),
        max_abs_diff_pooled=float(np.max(np.abs(fed - pooled_pred))),
    )
    (root / "share_figures.json").write_text(json.dumps(out, indent=2))
    return out


class Share(Chapter):
    """Chapter 6: two bureaus' gateways jointly forecast tomorrow's PM2.5."""

    title = "Share: two bureaus' gateways learn together, raw data stays home"

    def run(self, ctx: DemoContext) -> None:
        t0 = time.perf_counter()
        f = run_share_story(ctx.home / "federation", ctx.shared_data, log=ctx.log)
        r = ctx.report
        for k in ("rmse_federated", "rmse_pooled", "rmse_env_alone", "online_p99_ms", "train_s"):
            r.figures[f"share.{k}"] = float(f[k])
        r.figures["share.identical_to_pooled"] = float(f["identical_to_pooled"])
        sec = Section(
            f"Next-day PM2.5 over {f['test_rows']} held-out station-days ({f['source']}; "
            f"Paillier {f['key_bits']}-bit keys for the demo, 2048 by default)",
            ("model", "RMSE µg/m³", "MAE µg/m³", "where the data was"),
        )
        sec.rows += [
            (
                "federated (2 gateways)",
                f"{f['rmse_federated']:.2f}",
                f"{f['mae_federated']:.2f}",
                "each bureau kept its own rows",
            ),
            (
                "pooled (same booster)",
                f"{f['rmse_pooled']:.2f}",
                f"{f['mae_pooled']:.2f}",
                "all columns in one place",
            ),
            (
                "environment bureau alone",
                f"{f['rmse_env_alone']:.2f}",
                f"{f['mae_env_alone']:.2f}",
                "pollutants only",
            ),
        ]
        r.sections.append(sec)
        g = f["registry"]
        reg = Section(
            f"The joint model in the environment bureau's AI registry "
            f"(`cityos ai models {g['name']} --home {g['home']}`)",
            ("model", "version", "family", "stage", "data versions", "lineage"),
        )
        reg.rows.append(
            (
                g["name"],
                str(g["version"]),
                g["family"],
                g["stage"],
                ", ".join(f"{d}@{n}" for d, n in g["datasets"].items()),
                f"project {g['project']}, job {g['job']}",
            )
        )
        r.sections.append(reg)
        r.notes.append(
            f"Share: federated = pooled predictions {'exactly' if f['identical_to_pooled'] else 'NOT exactly'} "
            f"(max |diff| {f['max_abs_diff_pooled']:.3g}); training {f['train_s']:.1f} s on "
            f"{f['train_rows']} aligned rows, online p99 {f['online_p99_ms']:.1f} ms across two "
            f"gateways; chapter {time.perf_counter() - t0:.1f} s"
        )
