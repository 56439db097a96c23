"""Errors raised by the Pulse SDK.

Every error is a :class:`PulseError` carrying the gRPC status name in ``code``
(e.g. ``"NOT_FOUND"``) and the server's explanation in ``message``; a
subclass exists for each code you can act on::

    try:
        c.get_lineage_node("pred_missing")
    except pulse.NotFound as e:
        print(e.code, e.message)

Codes without a subclass (``CANCELLED``, ``DEADLINE_EXCEEDED``, ``UNKNOWN``,
``OUT_OF_RANGE``, ``DATA_LOSS``) raise :class:`PulseError` itself.
"""

from pulse._native import (
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
    "PulseError",
    "InvalidArgument",
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
