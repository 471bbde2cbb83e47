"""The worker side of a trial: build the model, train it, report to the service.

A placement job's trial (``task.kind == "placement"``) is handed to
:func:`l2l.worker.placement_trial.run_placement` instead; a hardware-aware search's trial also
reports the simulated step time of its trained model (:attr:`TrialTask.hardware`).

Runs inside a Ray worker (or any process). It uses only backend-neutral Keras, never
TensorFlow or keras_tuner directly, so a worker may run with KERAS_BACKEND=jax or
torch (a GPU machine may have JAX and no TensorFlow).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections import OrderedDict
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

    data = cached_dataset(task.dataset)
    # Same data split for every trial of a job; different initial weights per trial.
    keras.utils.set_random_seed((task.seed * 100_003 + task.trial_id) % 2**31)
    try:
        model = space.load_builder()(task.params, data.info, space.settings)
    except Exception as error:
        raise TrialBuildError(f"cannot build a model from {task.params}: {error!r}") from error

    batch_size = batch_size_for(space, task.params, DEFAULT_BATCH_SIZE)
    if task.final:
        return _train_final_model(task, model, data, batch_size)
    if task.start_epoch:
        resume_from_checkpoint(model, task)
    started = time.perf_counter()
    reports = _epoch_reports(reporter, task)
    history = model.fit(
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        initial_epoch=task.start_epoch,
        epochs=task.epochs,
        batch_size=batch_size,
        verbose=0,
        callbacks=[reports],
    )
    metrics: dict[str, Any] = {name: values[-1] for name, values in history.history.items()}
    if reports.stopped_at is not None:
        # early stopping ended the trial: the service stored this epoch's report as its result
        return {**metrics, "epochs": reports.stopped_at, "early_stopped": 1}
    metrics["epochs"] = task.epochs
    metrics["train_seconds"] = time.perf_counter() - started
    metrics["parameters"] = model.count_params()
    if task.hardware:
        from l2l.worker.placement_trial import placed_step_time

        metrics["step_time"] = placed_step_time(model, batch_size, task.hardware)
    reporter.final(metrics)
    return metrics


#: Datasets this process has loaded, most recently used last; a warm worker keeps its job's.
_DATASETS: OrderedDict[str, Any] = OrderedDict()
#: Datasets one process keeps loaded (a worker usually serves one job, so one dataset).
MAX_CACHED_DATASETS = 2
#: How many times this process has read a dataset from its source (a cache miss); tests count it.
dataset_loads = 0


def cached_dataset(spec: Mapping[str, Any]) -> Any:
    """The dataset ``spec`` names, split by its own split seed, loaded once per process.

    The same split for every trial and the final model (the dataset's seed, not the job's).
    A file-backed dataset is keyed by its path, size and modification time too, so a file
    replaced under the same name is read again. Callers must not modify the arrays.
    """
    global dataset_loads
    from l2l.service.datasets import load_dataset

    key = _dataset_key(spec)
    if key in _DATASETS:
        _DATASETS.move_to_end(key)
        return _DATASETS[key]
    data = load_dataset(dict(spec), seed=spec.get("split_seed", 0))
    dataset_loads += 1
    _DATASETS[key] = data
    while len(_DATASETS) > MAX_CACHED_DATASETS:
        _DATASETS.popitem(last=False)
    return data


def _dataset_key(spec: Mapping[str, Any]) -> str:
    stamp: list[int] = []
    path = spec.get("path")
    if isinstance(path, str):
        with contextlib.suppress(OSError):
            stat = os.stat(path)
            stamp = [stat.st_size, stat.st_mtime_ns]
    return json.dumps([dict(spec), stamp], sort_keys=True, default=str)


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


def checkpoint_path(task: TrialTask, epoch: int) -> Path:
    """Where the weights of ``task``'s configuration after ``epoch`` (from 1) are kept."""
    if task.checkpoint_dir is None:
        raise ValueError(f"trial {task.trial_id} has no checkpoint folder")
    return Path(task.checkpoint_dir) / f"epoch-{epoch}.weights.h5"


def resume_from_checkpoint(model: Any, task: TrialTask) -> None:
    """Load the weights a promoted trial's line saved after ``task.start_epoch``.

    The file holds the optimizer's variables too (Adam's moments and step); they are loaded
    when the optimizer is built first. A missing checkpoint is a TrialBuildError: training
    again from epoch 1 is what promotion must not do.
    """
    path = checkpoint_path(task, task.start_epoch)
    if not path.is_file():
        raise TrialBuildError(f"the checkpoint to resume from (epoch {task.start_epoch}) is missing")
    if getattr(model, "optimizer", None) is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.load_weights(path)


def _epoch_reports(reporter: TrialReporter, task: TrialTask) -> Any:
    """A callback that checkpoints at the task's rungs, reports each epoch and stops when told."""
    import keras

    class EpochReports(keras.callbacks.Callback):  # type: ignore[misc]
        stopped_at: int | None = None

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            finished = epoch + 1  # Keras counts from 0, early stopping from 1
            if finished in task.checkpoint_epochs:
                # before the report: a trial told to stop here must leave its weights behind
                path = checkpoint_path(task, finished)
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_name(f".{path.name}.partial.weights.h5")
                self.model.save_weights(partial)
                partial.replace(path)
            answer = reporter.step(epoch, logs or {})
            if _decision(answer) == "stop":
                self.stopped_at = finished
                self.model.stop_training = True

    return EpochReports()


def _decision(answer: Any) -> str:
    """The service's answer to an epoch report: an HTTP reply (dict) or a ReportOutcome."""
    if isinstance(answer, Mapping):
        return str(answer.get("decision", "continue"))
    return str(getattr(answer, "decision", "continue"))
