"""Spatio-temporal analytics: trajectory cleaning, segmentation, stay points, map matching,
similarity, clustering, and grid/region/OD aggregation, on in-memory frames and store datasets."""

from cityos.analytics._cluster import cluster_stays, dbscan
from cityos.analytics._flows import (
    CellGrid,
    flow_tensor,
    grid_flows,
    od_matrix,
    region_flows,
    segment_speeds,
)
from cityos.analytics._mapmatch import MapMatcher, MatchResult, map_match
from cityos.analytics._similarity import Metric, top_k_similar, trajectory_distance
from cityos.analytics._store import (
    aggregate_dataset,
    load_points,
    map_match_dataset,
    similar_in_dataset,
    split_dataset,
    stay_points_dataset,
)
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
    "CellGrid",
    "MapMatchError",
    "MapMatcher",
    "MatchResult",
    "Metric",
    "aggregate_dataset",
    "build_trajectories",
    "cluster_stays",
    "dbscan",
    "filter_max_speed",
    "filter_min_length",
    "flow_tensor",
    "grid_flows",
    "interpolate",
    "load_points",
    "map_match",
    "map_match_dataset",
    "od_matrix",
    "region_flows",
    "segment_speeds",
    "similar_in_dataset",
    "simplify",
    "split_by_gap",
    "split_by_stays",
    "split_dataset",
    "stay_points",
    "stay_points_dataset",
    "top_k_similar",
    "trajectory_distance",
]
