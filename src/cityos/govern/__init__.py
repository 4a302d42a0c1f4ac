"""City governance (the "one core"): one door for intake (Open311 GeoReport v2, the
native API, bulk imports, early warnings), duplicate merging, dispatch, a workflow with
deadlines per service and step, escalation up the levels city → district → street →
community, warnings with outcomes, and evaluation (行政问效).

Start with :func:`load_organisation` (or :func:`generate_organisation`) and
:class:`Governance`; ``docs/govern.md`` walks through a dispatcher's day.
"""

from cityos.govern._bulk import MAPPINGS_DIR, BulkResult, bulk_import
from cityos.govern._core import (
    CHANNELS,
    Clock,
    Deduplicator,
    DispatchPredictor,
    Governance,
    Intake,
    SweepResult,
    SystemClock,
)
from cityos.govern._evaluate import breakdown, evaluate, hotspots, kpi, trends
from cityos.govern._geocode import Geocoded, Geocoder, geocode, reverse_geocode
from cityos.govern._mirror import EVENTS, EVENTS_SCHEMA, WARNINGS, WARNINGS_SCHEMA
from cityos.govern._model import (
    ACTIONS,
    LEVELS,
    OPEN_STATUSES,
    ROLES,
    STATUSES,
    Event,
    Report,
    Transition,
    Warning,
    Workflow,
    format_event_id,
    parse_duration,
)
from cityos.govern._notify import Subscription, verify_signature
from cityos.govern._org import (
    DEFAULT_SERVICES,
    Jurisdictions,
    OrgSummary,
    generate_organisation,
    load_organisation,
)
from cityos.govern.errors import (
    EventNotFound,
    GovernError,
    IdempotencyConflict,
    IllegalTransition,
    IntakeError,
    OutsideJurisdiction,
    StaleVersion,
    UnknownDepartment,
)

__all__ = [
    "ACTIONS",
    "CHANNELS",
    "DEFAULT_SERVICES",
    "EVENTS",
    "EVENTS_SCHEMA",
    "LEVELS",
    "MAPPINGS_DIR",
    "OPEN_STATUSES",
    "ROLES",
    "STATUSES",
    "WARNINGS",
    "WARNINGS_SCHEMA",
    "BulkResult",
    "Clock",
    "Deduplicator",
    "DispatchPredictor",
    "Event",
    "EventNotFound",
    "Geocoded",
    "Geocoder",
    "GovernError",
    "Governance",
    "IdempotencyConflict",
    "IllegalTransition",
    "Intake",
    "IntakeError",
    "Jurisdictions",
    "OrgSummary",
    "OutsideJurisdiction",
    "Report",
    "StaleVersion",
    "Subscription",
    "SweepResult",
    "SystemClock",
    "Transition",
    "UnknownDepartment",
    "Warning",
    "Workflow",
    "breakdown",
    "bulk_import",
    "evaluate",
    "format_event_id",
    "generate_organisation",
    "geocode",
    "hotspots",
    "kpi",
    "load_organisation",
    "parse_duration",
    "reverse_geocode",
    "trends",
    "verify_signature",
]
