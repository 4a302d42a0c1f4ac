"""Pure geometry kernels shared by every layer: CRS handling, distances, space-filling curves
and trajectory distances. No I/O; numpy in, numpy out."""

from cityos.geo.crs import WGS84, is_geographic, to_crs, transform_xy
from cityos.geo.distance import EARTH_RADIUS_M, haversine, point_bbox_distance
from cityos.geo.sfc import deinterleave2, interleave2, xz2_key, z2_key
from cityos.geo.similarity import discrete_frechet, dtw, hausdorff, lcss

__all__ = [
    "EARTH_RADIUS_M",
    "WGS84",
    "deinterleave2",
    "discrete_frechet",
    "dtw",
    "hausdorff",
    "haversine",
    "interleave2",
    "is_geographic",
    "lcss",
    "point_bbox_distance",
    "to_crs",
    "transform_xy",
    "xz2_key",
    "z2_key",
]
