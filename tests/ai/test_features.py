"""Feature specs over store datasets: panels, caching by dataset version, spec errors,
chronological splits, spatial features, and the leakage proof (no feature at t reads data
after t)."""

from __future__ import annotations

import numpy as np
import pytest
from tests.ai.builders import air_city, make_panel

from cityos.ai import (
    FeatureSpec,
    FeatureSpecError,
    TabularSpec,
    build_panel,
    calendar_features,
    chrono_split,
    distance_adjacency,
    knn_indices,
    tabular_features,
)
from cityos.store import Store


def test_panel_from_store_matches_the_rows(city: Store) -> None:
    src = air_city(city, 100)
    spec = FeatureSpec("air", "pm25", covariates=("temperature",), country="CN")
    p = build_panel(city, spec)
    assert p.shape == (100, 12, 2) and p.channels == ("pm25", "temperature")
    order = np.argsort([str(n) for n in src.nodes])
    np.testing.assert_allclose(p.values, src.values[:, order], equal_nan=True)
    assert p.datasets == {"air": city.describe("air").version}


def test_cache_is_keyed_by_dataset_version(city: Store) -> None:
    air_city(city, 60)
    spec = FeatureSpec("air", "pm25")
    build_panel(city, spec)
    files = list((city.settings.home / "ai" / "features").glob("*.npz"))
    assert len(files) == 1
    again = build_panel(city, spec)
    assert len(list(files[0].parent.glob("*.npz"))) == 1  # reused
    # new data -> new version -> a new panel, not the stale cache
    import pandas as pd

    city.append(
        "air",
        pd.DataFrame(
            {
                "id": ["s0"],
                "t": [again.times[-1] + pd.Timedelta("1h")],
                "x": [116.3],
                "y": [39.9],
                "pm25": [5.0],
                "temperature": [1.0],
            }
        ),
    )
    fresh = build_panel(city, spec)
    assert fresh.shape[0] == again.shape[0] + 1
    assert len(list(files[0].parent.glob("*.npz"))) == 2


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (FeatureSpec("nope", "pm25"), "unknown dataset 'nope'"),
        (FeatureSpec("air", "pm99"), "unknown field 'pm99'"),
        (FeatureSpec("air", "pm25", covariates=("wind",)), "unknown field 'wind'"),
        (FeatureSpec("air", "pm25", freq="soon"), "not a duration"),
        (FeatureSpec("air", "pm25", kind="cube"), "kind"),  # type: ignore[arg-type]
    ],
)
def test_bad_specs_are_clear_errors_and_change_nothing(
    city: Store, spec: FeatureSpec, match: str
) -> None:
    air_city(city, 30)
    before = city.describe("air").version
    with pytest.raises(FeatureSpecError, match=match):
        build_panel(city, spec)
    assert city.describe("air").version == before
    assert not (city.settings.home / "ai" / "features").exists()


def test_no_feature_at_t_reads_data_after_t() -> None:
    """Leakage: features computed on the whole panel equal those computed when every value
    after t is unknown, for every origin t and every feature."""
    p = make_panel(300)
    spec = TabularSpec(
        closeness=3,
        periods=2,
        trends=1,
        trend_len=48,
        covariate_rolling=(6, 24),
        covariate_changes=(3,),
        vectors=(("temperature", "temperature", "pm25"),),  # any channels: the arithmetic
        target_changes=(1, 24),
        city_mean=True,
    )
    origins = np.arange(0, 300, 7)
    full, names = tabular_features(p, origins, spec)
    n = p.shape[1]
    for k, o in enumerate(origins):
        cut, _ = tabular_features(p.truncated(int(o)), np.array([o]), spec)
        np.testing.assert_array_equal(full[k * n : (k + 1) * n], cut, err_msg=f"origin {o}")
    assert len(names) == full.shape[1]
    # and the check can fail: a feature that peeks one step ahead is caught
    peek = tabular_features(
        p,
        origins[1:] + 1,
        TabularSpec(
            lags=(0,),
            rolling=(),
            periods=0,
            trends=0,
            calendar=False,
            k_nearest=0,
            node_feature=False,
            covariate_lags=(),
            covariate_diff=False,
        ),
    )[0]
    trunc = tabular_features(
        p.truncated(int(origins[1])),
        np.array([origins[1] + 1]),
        TabularSpec(
            lags=(0,),
            rolling=(),
            periods=0,
            trends=0,
            calendar=False,
            k_nearest=0,
            node_feature=False,
            covariate_lags=(),
            covariate_diff=False,
        ),
    )[0]
    assert not np.array_equal(peek[:n], trunc, equal_nan=True)


def test_deep_model_inputs_do_not_read_the_future() -> None:
    pytest.importorskip("torch")
    from cityos.ai import make_model

    p = make_panel(200)
    m = make_model("stid", 3, epochs=1, max_batches_per_epoch=2).fit(p, train=(0, 150))
    o = 120
    a = m._inputs(p, np.array([o]))  # type: ignore[attr-defined]
    m._z_key = None  # type: ignore[attr-defined]
    b = m._inputs(p.truncated(o), np.array([o]))  # type: ignore[attr-defined]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_chronological_split_only() -> None:
    p = make_panel(48)
    assert chrono_split(p, p.times[10], p.times[20]) == [(0, 10), (10, 20), (20, 48)]
    with pytest.raises(FeatureSpecError, match="increase"):
        chrono_split(p, p.times[20], p.times[10])


def test_calendar_holidays_and_spatial_features() -> None:
    import pandas as pd

    t = pd.DatetimeIndex(["2016-02-08T04:00Z", "2016-02-15T04:00Z"])  # Spring Festival; a Monday
    cal = calendar_features(t, "Asia/Shanghai", "CN")
    assert cal[:, 3].tolist() == [1.0, 0.0] and cal[:, 0].tolist() == [12.0, 12.0]
    with pytest.raises(FeatureSpecError, match="no country"):
        calendar_features(t, "UTC", "XX")
    x, y = np.array([116.30, 116.31, 116.50]), np.array([39.9, 39.9, 39.9])
    assert knn_indices(x, y, 1).ravel().tolist() == [1, 0, 1]
    a = distance_adjacency(x, y)
    assert a[0, 1] > a[0, 2] and np.allclose(a, a.T)
