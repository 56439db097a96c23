"""Pulse: safe machine learning on production databases.

Connect to a Pulse server (``pulse up`` runs one locally) and use the
returned :class:`Client`::

    import pulse

    c = pulse.connect()                   # PULSE_ENDPOINT, PULSE_API_KEY
    c.record_lineage_node("ds_orders", "datasource",
                          {"name": "orders-db", "connector": "postgres"})
    print(c.trace("pred_abc123"))         # the lineage tree, as `pulse lineage` prints it

Errors are typed exceptions rooted at :class:`PulseError`, each carrying the
gRPC ``code`` and the server's ``message``.
"""

from pulse._client import DEFAULT_ENDPOINT, Client, connect
from pulse._datasets import Datasource, DatasetVersion, Record, SnapshotJob
from pulse._drift import Baseline, DriftReport, FeatureDrift, MetricValue, Monitor
from pulse._inference import Feedback, Prediction
from pulse._native import Trace, __version__
from pulse._pipelines import (
    Event,
    EventWatch,
    InvalidSpec,
    Pipeline,
    PipelineRun,
    PolicyDecision,
    RetrainingPolicy,
    RunTimeline,
    TimelineEntry,
)
from pulse._training import Checkpoint, ModelVersion, TrainingJob, TrainingRun
from pulse.exceptions import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PulseError,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)

__all__ = [
    "__version__",
    "DEFAULT_ENDPOINT",
    "connect",
    "Client",
    "Trace",
    "Datasource",
    "DatasetVersion",
    "Record",
    "SnapshotJob",
    "TrainingJob",
    "TrainingRun",
    "ModelVersion",
    "Prediction",
    "Feedback",
    "Checkpoint",
    "DriftReport",
    "FeatureDrift",
    "MetricValue",
    "Monitor",
    "Baseline",
    "RetrainingPolicy",
    "PolicyDecision",
    "Pipeline",
    "PipelineRun",
    "RunTimeline",
    "TimelineEntry",
    "Event",
    "EventWatch",
    "PulseError",
    "InvalidArgument",
    "InvalidSpec",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "Unauthenticated",
    "FailedPrecondition",
    "Aborted",
    "ResourceExhausted",
    "Unavailable",
    "Unimplemented",
    "Internal",
]
