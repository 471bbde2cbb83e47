"""GPU packing: the memory prediction, the packing arithmetic, and a trial that runs out of
memory on a shared GPU retried alone by the job loop (never lost). No GPU needed: the
arithmetic is plain numbers and the loop runs a fake executor that asks for GPUs."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from conftest import HANG_SECONDS, LiveServer, free_port, make_settings
from fakes import ThreadExecutor

from l2l.loop import JobLoop
from l2l.service.jobs import submit_job
from l2l.service.jobspec import JobSpec
from l2l.store import Store
from l2l.store.states import JobState, TrialState
from l2l.worker.executor import Outcome, TrialTask
from l2l.worker.packing import (
    FRAMEWORK_BYTES,
    estimate_memory,
    gpu_fraction,
    is_out_of_memory,
    model_memory,
    packed_resources,
    predict_task_memory,
    trials_per_gpu,
)

GB = 2**30


def test_memory_is_weights_gradients_and_adam_slots_plus_activations_at_the_batch_size() -> None:
    estimate = estimate_memory(parameters=1_000_000, activation_values_per_example=50_000, batch_size=64)
    assert estimate.weight_bytes == 1_000_000 * 4 * 4  # weight, gradient, two moments; float32
    assert estimate.activation_bytes == 50_000 * 64 * 2 * 4  # kept forward, and its gradient
    assert estimate.total_bytes == estimate.weight_bytes + estimate.activation_bytes + FRAMEWORK_BYTES
    doubled = estimate_memory(1_000_000, 50_000, 128)
    assert doubled.activation_bytes == 2 * estimate.activation_bytes
    with pytest.raises(ValueError):
        estimate_memory(10, 10, 0)


def test_a_gpu_share_is_rounded_up_to_an_eighth_a_quarter_a_half_or_all() -> None:
    device = 80 * GB
    assert gpu_fraction(1 * GB, device) == 1 / 8  # 1.25 GB of 80
    assert gpu_fraction(int(10 * GB / 1.25), device) == 1 / 8  # exactly an eighth with the margin
    assert gpu_fraction(int(10 * GB / 1.25) + 1, device) == 1 / 4
    assert gpu_fraction(30 * GB, device) == 1 / 2  # 37.5 GB with the margin
    assert gpu_fraction(33 * GB, device) == 1.0  # 41.25 GB: more than half
    assert gpu_fraction(200 * GB, device) == 1.0  # too big for any share: the whole GPU
    assert [trials_per_gpu(f) for f in (1 / 8, 1 / 4, 1 / 2, 1.0)] == [8, 4, 2, 1]


def test_only_a_whole_gpu_request_is_packed_and_alone_gets_it_back() -> None:
    small = 2 * GB
    assert packed_resources({"CPU": 1, "GPU": 1}, small, 80 * GB) == {"CPU": 1, "GPU": 1 / 8}
    assert packed_resources({"CPU": 1, "GPU": 1}, small, 80 * GB, alone=True) == {"CPU": 1, "GPU": 1}
    assert packed_resources({"GPU": 2}, small, 80 * GB) == {"GPU": 2}  # several GPUs stay as asked
    assert packed_resources({"CPU": 2}, small, 80 * GB) == {"CPU": 2}


def test_out_of_memory_errors_are_told_from_others() -> None:
    assert is_out_of_memory("XlaRuntimeError: RESOURCE_EXHAUSTED: Out of memory while trying to allocate")
    assert is_out_of_memory("ResourceExhaustedError: OOM when allocating tensor with shape[64,256]")
    assert is_out_of_memory("the worker died: OutOfMemoryError: Task was killed due to the node running low")
    assert not is_out_of_memory("ValueError: shapes (3,) and (4,) not aligned")
    assert not is_out_of_memory(None)


def test_the_prediction_counts_a_real_models_parameters_and_layer_outputs() -> None:
    import keras

    inputs = keras.Input((20,))
    hidden = keras.layers.Dense(64, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10)(hidden))
    estimate = model_memory(model, batch_size=32)
    assert estimate.parameters == 20 * 64 + 64 + 64 * 10 + 10
    assert estimate.activation_bytes == (20 + 64 + 10) * 32 * 2 * 4  # the input, both layers' outputs

    # A job's trial: the space as stored, its parameters and dataset; a wider model needs more.
    from search_spaces import get_space
    from search_spaces.mlp import DEFAULT_PARAMS

    space = get_space("mlp").to_dict()
    narrow = predict_task_memory(space, {**DEFAULT_PARAMS, "num_layers": 1, "units": 32}, {"name": "wine"})
    wide = predict_task_memory(space, {**DEFAULT_PARAMS, "num_layers": 3, "units": 256}, {"name": "wine"})
    assert 0 < narrow.parameters < wide.parameters
    assert narrow.activation_bytes < wide.activation_bytes


class _SharedGpuExecutor(ThreadExecutor):
    """Has GPUs; every trial's first attempt on a share of a GPU runs out of memory."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[int, int, dict[str, float]]] = []
        self._ran_out: set[int] = set()

    def check_resources(self, resources: Mapping[str, float]) -> None:
        pass

    def submit(self, task: TrialTask, resources: Mapping[str, float]) -> None:
        self.requests.append((task.trial_id, task.attempt, dict(resources)))
        if resources.get("GPU", 0) < 1 and task.trial_id not in self._ran_out:
            self._ran_out.add(task.trial_id)
            error = "XlaRuntimeError: RESOURCE_EXHAUSTED: Out of memory while trying to allocate 9.1GiB"
            with self._lock:
                self._done.append(Outcome(task.trial_id, error, True, task.attempt, out_of_memory=True))
            return
        super().submit(task, resources)


def test_a_packed_trial_that_runs_out_of_memory_is_retried_alone(store: Store, tmp_path: Path) -> None:
    # No retries at all for ordinary errors: running out of memory packed is not the trial's fault.
    settings = make_settings(tmp_path, port=free_port(), max_retries=0)
    spec = {
        "dataset": "wine",
        "space": "mlp",
        "strategy": "random",
        "seed": 2,
        "final_model": False,
        "budget": {"trials": 3, "concurrency": 2, "epochs": 1, "resources": {"GPU": 1}, "pack_gpus": True},
    }
    executor = _SharedGpuExecutor()
    with LiveServer(store, settings):
        job_id = submit_job(store, JobSpec.model_validate(spec), settings).id
        loop = JobLoop(store, executor, settings)
        deadline = time.monotonic() + HANG_SECONDS
        while not store.get_job(job_id).state.is_finished():
            assert time.monotonic() < deadline, "the job did not finish"
            if not loop.step():
                time.sleep(0.02)

    trials, total = store.list_trials(job_id)
    assert store.get_job(job_id).state is JobState.COMPLETED and total == 3
    assert all(t.state is TrialState.COMPLETED and t.attempts == 2 for t in trials), [t.error for t in trials]
    for trial in trials:
        asked = [resources["GPU"] for trial_id, _, resources in executor.requests if trial_id == trial.id]
        assert asked == [1 / 8, 1.0], asked  # a small MLP packs eight to a GPU; alone after
        assert "RESOURCE_EXHAUSTED" in (trial.error or "")


def test_pack_gpus_needs_a_whole_gpu_per_trial() -> None:
    with pytest.raises(ValueError, match="pack_gpus"):
        JobSpec.model_validate(
            {
                "dataset": "wine",
                "space": "mlp",
                "budget": {"trials": 2, "resources": {"GPU": 0.5}, "pack_gpus": True},
            }
        )
