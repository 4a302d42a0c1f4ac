"""Spatio-temporal analytics: trajectory cleaning, segmentation, stay points, map matching,
similarity, clustering, and grid/region/OD aggregation, on in-memory frames and store datasets."""

from cityos.analytics._trajectory import (
    build_trajectories,
    filter_max_speed,
    filter_min_length,
    interpolate,
    simplify,
    split_by_gap,
    split_by_stays,
    stay_points,
)
from cityos.analytics.errors import AnalyticsError, MapMatchError

__all__ = [
    "AnalyticsError",
    "MapMatchError",
    "build_trajectories",
    "filter_max_speed",
    "filter_min_length",
    "interpolate",
    "simplify",
    "split_by_gap",
    "split_by_stays",
    "stay_points",
]
