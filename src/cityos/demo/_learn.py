"""Chapter 3 of the city story, *learn*: a PM2.5 forecaster trained on the real Beijing
readings (generated readings when absent), registered, deployed and scoring a day into a
predictions dataset; then crowd flows of the generated fleet, where a gathering raises a
crowd-gathering detection."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from cityos.demo._story import Chapter, DemoContext, Section

__all__ = ["Learn"]

_COVARIATES = ("pm10", "no2", "co", "o3", "temperature", "pressure", "dew_point", "wind_speed")


def _fmt(v: Any) -> str:
    return "" if v is None else f"{v:.2f}"


class Learn(Chapter):
    """Chapter 3: train, register, deploy, score; crowd-gathering warning."""

    title = "Learn: forecasts and early warnings from the AI engine"

    def run(self, ctx: DemoContext) -> None:
        from cityos.ai import FeatureSpec
        from cityos.ai._lifecycle import predict_fresh, score_to_dataset, train
        from cityos.ai._registry import ModelRegistry

        store = ctx.require_store()
        names = {d.name for d in store.list_datasets()}
        if "beijing_air_quality" in names:
            spec = FeatureSpec(
                "beijing_air_quality",
                "pm25",
                covariates=_COVARIATES,
                start="2016-03-01",
                end="2017-03-01",
                timezone="Asia/Shanghai",
                country="CN",
            )
            split: dict[str, Any] = {"train_end": "2016-12-01", "val_end": "2017-01-01"}
            name, what = "pm25", "PM2.5 (real Beijing readings, 2016-03..2017-02)"
        else:
            spec = FeatureSpec("sensor_readings", "value")
            info = store.describe("sensor_readings")
            start = pd.Timestamp(info.t_min, unit="ms", tz="UTC")
            split = {
                "train_end": start + pd.Timedelta("4D"),
                "val_end": start + pd.Timedelta("5D12h"),
            }
            name, what = "sensor_value", "loop-detector counts (generated readings)"
        ctx.log(f"training forecasters of {what} ...")
        rows = []
        result = None
        for family, params in (
            ("persistence", {}),
            ("historical_average", {}),
            ("lightgbm", {"n_estimators": 80, "max_rows": 60_000, "num_leaves": 31}),
        ):
            tick = time.perf_counter()
            r = train(
                store, spec, family, horizon=24, params=params, name=name, eval_stride=3, **split
            )
            v = r.version
            assert v is not None
            test = v.metrics.get("test") or v.metrics.get("val") or {"mae": {}}
            rows.append(
                (
                    family,
                    f"v{v.version}",
                    f"{time.perf_counter() - tick:.1f}",
                    *(_fmt(test["mae"].get(str(h))) for h in (1, 6, 12, 24)),
                )
            )
            result = r
        assert result is not None and result.version is not None
        reg = ModelRegistry.of(store)
        best = result.version
        reg.deploy(name, best.version, actor="demo")
        ctx.report.sections.append(
            Section(
                f"Model table: {what}, test MAE per horizon (h)",
                ("model", "version", "train s", "h1", "h6", "h12", "h24"),
                rows,
            )
        )
        fresh = predict_fresh(store, name)
        day_end = pd.Timestamp(fresh["issued_at"].iloc[0]) + pd.Timedelta("1h")
        n = score_to_dataset(store, name, f"{name}_forecast", day_end - pd.Timedelta("1D"), day_end)
        ctx.report.notes.append(
            f"deployed {name} v{best.version} ({best.family}); forecast {len(fresh)} values fresh "
            f"from the store; scored one day into {name}_forecast ({n:,} predictions)"
        )
        ctx.report.figures["learn.test_mae_h6"] = float(
            best.metrics.get("test", best.metrics.get("val", {})).get("mae", {}).get("6") or np.nan
        )
        self._crowd(ctx)

    def _crowd(self, ctx: DemoContext) -> None:
        from cityos.ai import FeatureSpec
        from cityos.ai._anomaly import CrowdGatheringDetector, write_detections
        from cityos.ai._lifecycle import train

        store = ctx.require_store()
        info = store.describe("vehicles")
        t0 = pd.Timestamp(info.t_min, unit="ms", tz="UTC").floor("1h")
        t1 = pd.Timestamp(info.t_max, unit="ms", tz="UTC").floor("1h")
        if (t1 - t0) < pd.Timedelta("30h"):
            ctx.report.notes.append("crowd flows: under 30 h of movement, no crowd model trained")
            return
        bbox = info.bbox
        assert bbox is not None
        # a crowd gathers near the city centre late on the last day: people arriving on foot
        cx, cy = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
        when = t1 - pd.Timedelta("3h")
        rng = np.random.default_rng(11)
        k = 150
        ids = [f"crowd{i:03d}" for i in range(k)]
        start_xy = rng.normal(0, 0.004, (k, 2)) + np.array([cx + 0.012, cy])
        rows = pd.DataFrame(
            {
                "id": ids * 2,
                "t": [when + pd.Timedelta(minutes=int(m)) for m in rng.integers(0, 20, k)]
                + [when + pd.Timedelta(minutes=int(m)) for m in rng.integers(30, 55, k)],
                "x": np.concatenate([start_xy[:, 0], cx + rng.normal(0, 0.0006, k)]),
                "y": np.concatenate([start_xy[:, 1], cy + rng.normal(0, 0.0006, k)]),
                "kind": "pedestrian",
                "speed_kmh": 4.0,
                "heading": 270.0,
                "trip_id": -1,
            }
        )
        store.append("vehicles", rows, source="demo:gathering")
        spec = FeatureSpec("vehicles", "inflow", kind="grid", cell_m=1000.0, grid_bbox=tuple(bbox))
        ctx.log("training a crowd-flow forecaster on grid inflows of the fleet ...")
        r = train(
            store,
            spec,
            "seasonal_naive",
            horizon=1,
            name="crowd_inflow",
            train_end=t0 + pd.Timedelta("24h"),
            val_end=when - pd.Timedelta("1h"),
        )
        assert r.version is not None
        det = CrowdGatheringDetector("crowd_inflow", r.version.version).detect(
            store, when - pd.Timedelta("1h"), t1 + pd.Timedelta("1h")
        )
        n = write_detections(store, det.to_pandas())
        ctx.report.figures["learn.crowd_detections"] = float(det.num_rows)
        d = det.to_pandas()
        ctx.report.sections.append(
            Section(
                "Crowd-gathering detections (inflow far above forecast)",
                ("cell", "window start", "observed", "expected", "upper"),
                [
                    (
                        str(x.place),
                        str(x.window_start),
                        f"{x.observed:.0f}",
                        f"{x.expected:.0f}",
                        f"{x.upper:.0f}",
                    )
                    for x in d.itertuples(index=False)
                ],
            )
        )
        ctx.report.notes.append(
            f"crowd gathering: {n} detection(s) written to the detections dataset"
        )
