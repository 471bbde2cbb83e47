"""The worker side of a trial: build the model, train it, report to the service.

A placement job's trial (``task.kind == "placement"``) is handed to
:func:`l2l.worker.placement_trial.run_placement` instead; a hardware-aware search's trial also
reports the simulated step time of its trained model (:attr:`TrialTask.hardware`).

Runs inside a Ray worker (or any process). It uses only backend-neutral Keras, never
TensorFlow or keras_tuner directly, so a worker may run with KERAS_BACKEND=jax or
torch (a GPU machine may have JAX and no TensorFlow).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from l2l.worker.executor import DEFAULT_BATCH_SIZE, TrialBuildError, TrialTask
from l2l.worker.reporter import Reporter
from search_spaces.spec import SpaceError

if TYPE_CHECKING:
    from search_spaces.nb201_table import NB201Table


class TrialReporter(Protocol):
    """Where a trial's reports go: :class:`~l2l.worker.reporter.Reporter` (HTTP) or an in-process one."""

    def step(self, step: int, metrics: Mapping[str, Any]) -> Any: ...

    def final(self, metrics: Mapping[str, Any], step: int | None = None) -> Any: ...


def run_trial(
    task_data: dict[str, Any],
    cpus: float | None = None,
    *,
    reporter: TrialReporter | None = None,
    table: NB201Table | None = None,
) -> dict[str, Any]:
    """Train one trial and report each epoch and the final metrics; returns the final metrics.

    ``reporter`` defaults to HTTP reports to ``task.report_url``. A tabular NAS-Bench-201
    space (setting ``tabular``) is not trained: its validation accuracy is looked up in
    ``table`` (default: the table file, validation columns only) and reported as final.

    Raises TrialBuildError if the parameters do not give a model; any other exception
    is a crash the job loop may retry.
    """
    task = TrialTask(**task_data)
    from search_spaces import batch_size_for, get_space
    from search_spaces.nb201_table import tabular_dataset, tabular_metrics

    if reporter is None:
        reporter = Reporter(task.report_url, task.trial_id, task.token)
    if task.kind == "placement":
        _limit_threads(cpus)  # a learned placer trains its policy with TensorFlow
        from l2l.worker.placement_trial import run_placement

        return run_placement(task, reporter)  # type: ignore[arg-type]  # needs .placement: Reporter has it
    space = get_space(task.space)
    if tabular_dataset(space) is not None:
        try:
            looked_up = tabular_metrics(space, task.params, table)
        except SpaceError as error:
            raise TrialBuildError(f"cannot look {task.params} up: {error}") from error
        reporter.final(looked_up)
        return looked_up

    _limit_threads(cpus)
    import keras

    from l2l.service.datasets import load_dataset

    # The dataset's own split seed, not the job's: one split for every trial and the final model.
    data = load_dataset(task.dataset, seed=task.dataset.get("split_seed", 0))
    # Same data split for every trial of a job; different initial weights per trial.
    keras.utils.set_random_seed((task.seed * 100_003 + task.trial_id) % 2**31)
    try:
        model = space.load_builder()(task.params, data.info, space.settings)
    except Exception as error:
        raise TrialBuildError(f"cannot build a model from {task.params}: {error!r}") from error

    batch_size = batch_size_for(space, task.params, DEFAULT_BATCH_SIZE)
    if task.final:
        return _train_final_model(task, model, data, batch_size)
    started = time.perf_counter()
    history = model.fit(
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        epochs=task.epochs,
        batch_size=batch_size,
        verbose=0,
        callbacks=[_epoch_reports(reporter)],
    )
    metrics: dict[str, Any] = {name: values[-1] for name, values in history.history.items()}
    metrics["train_seconds"] = time.perf_counter() - started
    metrics["parameters"] = model.count_params()
    if task.hardware:
        from l2l.worker.placement_trial import placed_step_time

        metrics["step_time"] = placed_step_time(model, batch_size, task.hardware)
    reporter.final(metrics)
    return metrics


def _train_final_model(task: TrialTask, model: Any, data: Any, batch_size: int) -> dict[str, Any]:
    """Retrain on training + validation data, score once on the test part, upload the files."""
    import numpy as np

    x = np.concatenate([data.x_train, data.x_val])
    y = np.concatenate([data.y_train, data.y_val])
    started = time.perf_counter()
    model.fit(x, y, epochs=task.epochs, batch_size=batch_size, verbose=0)
    scores = model.evaluate(data.x_test, data.y_test, batch_size=batch_size, verbose=0, return_dict=True)
    metrics: dict[str, Any] = {f"test_{name}": float(value) for name, value in scores.items()}
    metrics["train_seconds"] = time.perf_counter() - started
    metrics["parameters"] = model.count_params()
    metrics["test_examples"] = len(data.y_test)
    with tempfile.TemporaryDirectory() as folder:
        files = {"keras": Path(folder) / "model.keras", "preprocessing": Path(folder) / "preprocessing.json"}
        model.save(files["keras"])
        files["preprocessing"].write_text(json.dumps(data.preprocessor.to_dict()))
        saved_model = _export_saved_model(model, Path(folder))
        if saved_model is not None:
            files["savedmodel"] = saved_model
        Reporter(task.report_url, task.trial_id, task.token).final_model(task.job_id, metrics, files)
    return metrics


def _export_saved_model(model: Any, folder: Path) -> Path | None:
    """A zipped TensorFlow SavedModel, where the backend is TensorFlow; None elsewhere."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return None
    model.export(str(folder / "savedmodel"), format="tf_saved_model", verbose=False)
    return Path(shutil.make_archive(str(folder / "savedmodel"), "zip", folder / "savedmodel"))


def _limit_threads(cpus: float | None) -> None:
    # A trial granted one CPU should use one core, or two trials fight over both. The
    # backends read these variables when first imported, so only the first trial of a
    # worker process sets them.
    if cpus is None or "keras" in sys.modules:
        return
    threads = str(max(1, int(cpus)))
    for name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(name, threads)
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _epoch_reports(reporter: TrialReporter) -> Any:
    import keras

    class EpochReports(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            reporter.step(epoch, logs or {})

    return EpochReports()
