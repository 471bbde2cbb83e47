"""The states a job and a trial go through, and which moves between them are legal."""

from __future__ import annotations

from enum import StrEnum


class TrialState(StrEnum):
    QUEUED = "queued"  # stored, not yet handed to a worker
    RUNNING = "running"  # handed to a worker (``attempts`` says how many times)
    COMPLETED = "completed"  # reported a finite reward
    FAILED = "failed"  # could not be built, crashed too often, or reported no usable reward
    CANCELLED = "cancelled"  # its job stopped before it ran
    TIMED_OUT = "timed_out"  # ran past its time limit on every attempt; told like a failure

    def is_finished(self) -> bool:
        return self in _FINISHED_TRIAL_STATES

    def can_become(self, new: TrialState) -> bool:
        # RUNNING -> RUNNING is a retry: a new attempt with a new token.
        return not self.is_finished() and new is not TrialState.QUEUED


_FINISHED_TRIAL_STATES = frozenset(
    {TrialState.COMPLETED, TrialState.FAILED, TrialState.CANCELLED, TrialState.TIMED_OUT}
)


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"  # proposes nothing new; trials in flight finish and are told
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def is_finished(self) -> bool:
        return self in _FINISHED_JOB_STATES


_FINISHED_JOB_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})
