"""The store: the only package that talks to the database.

:mod:`l2l.store.database` holds :class:`Store` and its errors, :mod:`l2l.store.tables` the
SQLAlchemy tables, :mod:`l2l.store.records` the frozen snapshots it hands out, and
:mod:`l2l.store.states` the job and trial state machines. Callers import from here.
"""

from l2l.store.database import (
    AlreadySubmitted,
    Conflict,
    FinalModelFinished,
    JobNotRunning,
    LeaseLost,
    NotFound,
    StorageError,
    Store,
    TrialFinished,
)

__all__ = [
    "AlreadySubmitted",
    "Conflict",
    "FinalModelFinished",
    "JobNotRunning",
    "LeaseLost",
    "NotFound",
    "StorageError",
    "Store",
    "TrialFinished",
]
