"""What the job loop needs from whatever runs trials, and what passes between them.

The Ray executor (:mod:`l2l.worker.ray_executor`) is the real one; tests plug in others.
Everything here is plain data, so a task crosses process and machine boundaries as is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

#: Batch size of a trial whose space names none; the placement worker times steps at the same size.
DEFAULT_BATCH_SIZE = 32


class TrialBuildError(Exception):
    """The trial's model cannot be built from its parameters: retrying will not help."""


class ResourceUnavailable(Exception):
    """The cluster can never satisfy a trial's resource request (e.g. a GPU on a CPU-only cluster)."""


@dataclass(frozen=True)
class TrialTask:
    """Everything a worker needs to run one trial and report on it.

    ``kind`` says what the trial is: ``"search"`` trains ``params`` of ``space`` on
    ``dataset``; ``"placement"`` (a placement job's one trial) searches device placements
    as ``placement`` says, and ``dataset``, ``space`` and ``params`` are empty.
    """

    trial_id: int
    job_id: int
    attempt: int
    #: The bearer token for this attempt's reports; only its hash is stored.
    token: str
    report_url: str
    dataset: dict[str, Any]
    space: dict[str, Any]
    params: dict[str, Any]
    epochs: int
    #: Seeds the initial weights (the data split is the dataset's own).
    seed: int
    #: The job's final model: train on training + validation data, score once on the test
    #: part, upload the model files; ``trial_id`` is then the best trial's.
    final: bool = False
    kind: str = "search"
    #: A placement trial's work: ``graph`` (where its graph comes from, resolved by the job
    #: loop: benchmark, uploaded file or an earlier job's model), ``cluster``, ``strategy``,
    #: ``max_seconds``, ``batch_size`` and ``progress_seconds``.
    placement: dict[str, Any] | None = None
    #: Hardware-aware search: ``{"cluster", "placer"}``; the trained model's simulated step
    #: time on that cluster is reported as the metric ``step_time``.
    hardware: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Outcome:
    """A worker ended. ``error`` is None if it returned normally (its report says how it went)."""

    trial_id: int
    error: str | None = None
    #: False when retrying cannot help (the model could not be built).
    retryable: bool = True
    #: Which attempt's worker ended (None if the executor cannot tell).
    attempt: int | None = None
    #: It was a job's final model, not a trial.
    final: bool = False
    #: The task's kind (:attr:`TrialTask.kind`).
    kind: str = "search"
    #: The job loop stopped the worker at its time limit.
    timed_out: bool = False


class Executor(Protocol):
    def check_resources(self, resources: Mapping[str, float]) -> None:
        """Raise ResourceUnavailable if no worker could ever have ``resources``."""

    def submit(self, task: TrialTask, resources: Mapping[str, float]) -> None:
        """Start training ``task`` somewhere with ``resources``; returns at once."""

    def poll(self) -> list[Outcome]:
        """Workers that ended since the last call."""

    def cancel(self, trial_id: int) -> None:
        """Stop a running trial's worker, if it still runs."""

    def shutdown(self) -> None: ...
