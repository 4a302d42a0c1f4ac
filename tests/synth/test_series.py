from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cityos.synth import SynthError, SyntheticCity, make_road_speeds, make_sensor_readings


def test_sensor_readings_shape_and_daily_pattern(city: SyntheticCity) -> None:
    df = make_sensor_readings(city, 5, start="2026-03-02", days=7, interval="1h", seed=1)
    assert list(df.columns) == ["id", "t", "x", "y", "value", "edge_id"]
    assert len(df) == 5 * 7 * 24
    assert str(df["t"].dtype) == "datetime64[ms, UTC]"
    assert df["t"].iloc[0] == pd.Timestamp("2026-03-01 16:00", tz="UTC")  # local midnight
    assert (df.groupby("id")[["x", "y"]].nunique() == 1).all().all()
    assert (df["value"] > 0).all()
    local = df["t"].dt.tz_convert("Asia/Shanghai")
    weekday = local.dt.day_of_week < 5
    by_hour = df[weekday].groupby(local[weekday].dt.hour)["value"].mean()
    assert by_hour.loc[8] > 3 * by_hour.loc[3]
    again = make_sensor_readings(city, 5, start="2026-03-02", days=7, seed=1)
    pd.testing.assert_frame_equal(df, again)


def test_sensor_readings_reject_too_many_sensors(city: SyntheticCity) -> None:
    with pytest.raises(SynthError, match="n_sensors"):
        make_sensor_readings(city, len(city.edges) + 1)


def test_road_speeds_average_moving_ground_truth(city: SyntheticCity, fleet: pd.DataFrame) -> None:
    rs = make_road_speeds(city, fleet, bin="15min")
    assert list(rs.columns) == ["edge_id", "t", "speed_kmh", "n_points", "road_class"]
    moving = fleet[fleet["speed_kmh"] > 0]
    assert rs["n_points"].sum() == len(moving)
    row = rs.iloc[len(rs) // 2]
    sel = moving[
        (moving["true_edge"] == row["edge_id"]) & (moving["t"].dt.floor("15min") == row["t"])
    ]
    assert row["speed_kmh"] == pytest.approx(sel["speed_kmh"].mean())
    assert (rs["t"] == rs["t"].dt.floor("15min")).all()
    cls = city.edges["road_class"].astype(str).to_numpy()[rs["edge_id"].to_numpy()]
    np.testing.assert_array_equal(rs["road_class"].astype(str).to_numpy(), cls)


def test_road_speeds_need_ground_truth(city: SyntheticCity) -> None:
    with pytest.raises(SynthError, match="true_edge"):
        make_road_speeds(city, pd.DataFrame({"t": [], "speed_kmh": []}))
