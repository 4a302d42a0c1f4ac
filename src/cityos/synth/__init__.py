"""Synthetic, deterministic city data in the style of BerlinMOD: a road network with districts,
POIs, bus lines and water, a fleet's GPS feed with ground truth, sensor series and road speeds."""

from cityos.synth._city import (
    POI_CATEGORIES,
    ROAD_CLASSES,
    SPEED_LIMITS_KMH,
    SyntheticCity,
    make_city,
)
from cityos.synth._errors import SynthError
from cityos.synth._graph import Path, RoadGraph
from cityos.synth._series import make_road_speeds, make_sensor_readings
from cityos.synth._vehicles import (
    DEFAULT_MIX,
    VEHICLE_KINDS,
    iter_vehicle_points,
    simulate_vehicles,
)
from cityos.synth._water import WATER_KINDS, make_water

__all__ = [
    "DEFAULT_MIX",
    "POI_CATEGORIES",
    "ROAD_CLASSES",
    "SPEED_LIMITS_KMH",
    "VEHICLE_KINDS",
    "WATER_KINDS",
    "Path",
    "RoadGraph",
    "SynthError",
    "SyntheticCity",
    "iter_vehicle_points",
    "make_city",
    "make_road_speeds",
    "make_sensor_readings",
    "make_water",
    "simulate_vehicles",
]
