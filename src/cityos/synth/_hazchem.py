"""Hazardous chemicals for the demo city: enterprises, permits, carriers, and carrier GPS
tracks with injected illegal stops (ground truth known).

Registered enterprises are the city's chemical plants, gas stations and factories (POIs);
all of them hold a hazardous-chemical permit. Small unregistered
chemical sites sit beside roads the carriers drive. The carriers' tracks come from the
BerlinMOD-style simulation (:func:`cityos.synth.simulate_vehicles`, kind ``hazmat``: a
plant to gas stations and factories and back). Into these tracks two kinds of stop are
spliced, each a run of stationary noisy fixes with every later fix of that vehicle's day
shifted by the stop's length:

* illegal stops (the ground truth): 35-120 minutes at an unregistered site;
* decoys: drivers' rests of 35-70 minutes at a mall or office (outside every permitted
  site, but at no chemical enterprise).

>>> from cityos.synth import make_city
>>> w = make_hazchem(make_city(size_km=8.0), n_carriers=6, days=1, seed=3)
>>> set(w.enterprises["kind"]) >= {"chemical_plant", "gas_station", "small_chemical"}
True
>>> len(w.truth) > 0 and bool(w.truth["site_id"].isin(w.enterprises["id"]).all())
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cityos.synth._city import SyntheticCity
from cityos.synth._vehicles import simulate_vehicles

__all__ = ["HazchemWorld", "make_hazchem"]


@dataclass
class HazchemWorld:
    """Enterprises, permits, carriers, their GPS feed and the injected ground truth."""

    enterprises: pd.DataFrame  # id, name, kind, registered, x, y
    permits: pd.DataFrame  # id, enterprise_id, kind, valid_from, valid_to
    vehicles: pd.DataFrame  # id, enterprise_id, plate
    points: pd.DataFrame  # id, t, x, y, speed_kmh
    truth: pd.DataFrame  # vehicle, site_id, t_start, t_end (illegal stops)
    decoys: pd.DataFrame  # vehicle, t_start, t_end, x, y (legal rests)


def make_hazchem(
    city: SyntheticCity,
    n_carriers: int = 20,
    *,
    days: int = 2,
    start: str = "2026-03-02",
    seed: int = 0,
    interval_s: float = 30.0,
    illegal_share: float = 0.35,
    decoy_share: float = 0.25,
    n_idle_sites: int = 4,
) -> HazchemWorld:
    """Generate the hazardous-chemicals world (see the module docstring).

    ``illegal_share`` of carrier-days get one illegal stop, ``decoy_share`` a legal rest;
    ``n_idle_sites`` more unregistered sites are never visited.
    """
    rng = np.random.default_rng([seed, 991])
    mx, my = city.metres_per_degree()
    pois = city.pois.reset_index(drop=True)
    ent_rows: list[dict[str, object]] = []
    permits: list[dict[str, object]] = []
    t0 = pd.Timestamp(start, tz=city.tz).tz_convert("UTC")
    valid_from, valid_to = t0 - pd.Timedelta(days=365), t0 + pd.Timedelta(days=365)
    for _, p in pois[
        pois["category"].isin(["chemical_plant", "gas_station", "factory"])
    ].iterrows():
        eid = f"ENT-{len(ent_rows) + 1:04d}"
        ent_rows.append(
            {
                "id": eid,
                "name": str(p["name"]),
                "kind": str(p["category"]),
                "registered": True,
                "x": float(p.geometry.x),
                "y": float(p.geometry.y),
            }
        )
        # every registered enterprise on the carriers' rounds holds a permit
        permits.append(
            {
                "id": f"PRM-{len(permits) + 1:04d}",
                "enterprise_id": eid,
                "kind": "storage" if p["category"] != "chemical_plant" else "production",
                "valid_from": valid_from,
                "valid_to": valid_to,
            }
        )
    feed = simulate_vehicles(
        city,
        n_carriers,
        start=start,
        days=days,
        interval_s=interval_s,
        seed=seed,
        mix={"hazmat": 1.0},
    )
    feed = feed[["id", "t", "x", "y", "speed_kmh", "true_x", "true_y", "trip_id"]].copy()
    feed["day"] = (feed["t"].dt.tz_convert(city.tz).dt.floor("D")).astype("int64")
    plants = [e for e in ent_rows if e["kind"] == "chemical_plant"]
    vehicles = pd.DataFrame(
        {
            "id": sorted(feed["id"].unique()),
        }
    )
    vehicles["enterprise_id"] = [
        str(plants[i % len(plants)]["id"]) if plants else "" for i in range(len(vehicles))
    ]
    vehicles["plate"] = [f"京A·H{1000 + i:04d}" for i in range(len(vehicles))]
    others = pois[pois["category"].isin(["mall", "office"])]
    parts: list[pd.DataFrame] = []
    truth: list[dict[str, object]] = []
    decoys: list[dict[str, object]] = []
    sigma = 5.0
    for (vid, _day), g in feed.groupby(["id", "day"], sort=True):
        g = g.sort_values("t").reset_index(drop=True)
        u = rng.random()
        moving = g.index[(g["trip_id"] >= 0) & (g["speed_kmh"] > 5)].to_numpy()
        if len(moving) < 20 or u >= illegal_share + decoy_share:
            parts.append(g)
            continue
        k = int(moving[int(rng.integers(len(moving) // 4, 3 * len(moving) // 4))])
        t_stop = pd.Timestamp(int(g["t"].astype("int64").to_numpy()[k]), unit="ms", tz="UTC")
        if u < illegal_share:
            ang = float(rng.uniform(0, 2 * np.pi))
            off = float(rng.uniform(15, 40))
            sx = float(g["true_x"].to_numpy()[k]) + off * np.cos(ang) / mx
            sy = float(g["true_y"].to_numpy()[k]) + off * np.sin(ang) / my
            eid = f"ENT-{len(ent_rows) + 1:04d}"
            ent_rows.append(
                {
                    "id": eid,
                    "name": f"Small chemical site {len(ent_rows) + 1}",
                    "kind": "small_chemical",
                    "registered": False,
                    "x": sx,
                    "y": sy,
                }
            )
            dur = float(rng.uniform(35, 120)) * 60
            truth.append(
                {
                    "vehicle": vid,
                    "site_id": eid,
                    "t_start": t_stop,
                    "t_end": t_stop + pd.Timedelta(seconds=dur),
                }
            )
        else:
            o = others.iloc[int(rng.integers(len(others)))] if len(others) else None
            # a rest where the vehicle is (a roadside car park by a mall or office)
            sx, sy = float(g["true_x"].to_numpy()[k]), float(g["true_y"].to_numpy()[k])
            if o is not None and rng.random() < 0.5:
                sx, sy = float(o.geometry.x), float(o.geometry.y)
            dur = float(rng.uniform(35, 70)) * 60
            decoys.append(
                {
                    "vehicle": vid,
                    "t_start": t_stop,
                    "t_end": t_stop + pd.Timedelta(seconds=dur),
                    "x": sx,
                    "y": sy,
                }
            )
        n = int(dur // interval_s)
        ts = t_stop + pd.to_timedelta(np.arange(n) * interval_s, unit="s")
        stop = pd.DataFrame(
            {
                "id": vid,
                "t": ts,
                "x": sx + rng.normal(0, sigma, n) / mx,
                "y": sy + rng.normal(0, sigma, n) / my,
                "speed_kmh": 0.0,
                "true_x": sx,
                "true_y": sy,
                "trip_id": -1,
                "day": _day,
            }
        )
        after = g.iloc[k:].copy()
        after["t"] = after["t"] + pd.Timedelta(seconds=n * interval_s)
        parts.append(pd.concat([g.iloc[:k], stop, after], ignore_index=True))
    ent_ids = {str(e["id"]) for e in ent_rows}
    for i in range(n_idle_sites):
        node = int(rng.integers(len(city.node_x)))
        eid = f"ENT-{len(ent_rows) + 1:04d}"
        ent_ids.add(eid)
        ent_rows.append(
            {
                "id": eid,
                "name": f"Small chemical site {len(ent_rows) + 1}",
                "kind": "small_chemical",
                "registered": False,
                "x": float(city.node_x[node]) + 30 / mx,
                "y": float(city.node_y[node]),
            }
        )
        del i
    pts = pd.concat(parts, ignore_index=True)[["id", "t", "x", "y", "speed_kmh"]]
    pts["t"] = pts["t"].astype("datetime64[ms, UTC]")
    pts = pts.sort_values(["t", "id"], kind="stable").reset_index(drop=True)
    return HazchemWorld(
        enterprises=pd.DataFrame(ent_rows),
        permits=pd.DataFrame(permits),
        vehicles=vehicles,
        points=pts,
        truth=pd.DataFrame(truth, columns=["vehicle", "site_id", "t_start", "t_end"]),
        decoys=pd.DataFrame(decoys, columns=["vehicle", "t_start", "t_end", "x", "y"]),
    )
