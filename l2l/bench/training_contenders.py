"""The contenders of ``l2l bench training``: one search each, stopped by the clock.

Each runner takes a :class:`Search` (the same data, space, epochs, seed, slots and seconds
for all) and returns the trials that completed, each with the seconds since the search
started. The clock starts once the framework's driver is ready (Ray started, l2l's service
answering) and before any trial worker exists, so every contender pays its workers' start
and TensorFlow import inside the budget. How each one is stopped at the deadline:

* ``l2l`` / ``l2l_asha``: our job loop with the Ray executor (:func:`l2l.bench.overhead.l2l_service`),
  the job cancelled at the deadline (its running trials end ``cancelled``, never completed);
* ``kt_hyperband``: KerasTuner's own distributed mode, a chief process holding the
  Hyperband oracle and one tuner process per slot, all killed at the deadline;
* ``tune_asha_optuna``: Ray Tune's ``TuneConfig(time_budget_s=...)``.

A trial that completes after the deadline is dropped by every runner alike.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from l2l.bench.overhead import THREAD_ENV, free_port, l2l_service, start_ray

#: A job's trial budget high enough that only the clock ends the search.
UNLIMITED_TRIALS = 10_000


@dataclass(frozen=True)
class Search:
    """What every contender gets alike."""

    #: A dataset spec :func:`l2l.service.datasets.load_dataset` reads (split by its ``split_seed``).
    data: dict[str, Any]
    #: Our custom space over the ``mlp`` template; the other tools get the same decisions.
    space: dict[str, Any]
    #: The most epochs a trial trains (Hyperband's ``max_epochs``, ASHA's ``max_t``).
    epochs: int
    #: The search's wall-clock budget.
    seconds: float
    seed: int
    #: Trials at a time, one CPU (and one thread) each.
    concurrency: int = 2
    #: Early stopping: rungs at ``grace * eta**k`` epochs (ASHA), brackets by ``eta`` (Hyperband).
    grace: int = 1
    eta: int = 3


@dataclass(frozen=True)
class CompletedTrial:
    """One trial that completed within the budget: what was trained, how far, and its score."""

    params: dict[str, Any]
    #: Epochs the configuration had trained when it completed (fewer when stopped early).
    epochs: int
    #: Validation accuracy after its last epoch (the same rule for every contender).
    val_accuracy: float
    #: Seconds from the search's start to the trial's completion.
    seconds: float


def decision_names(space: dict[str, Any]) -> list[str]:
    return [decision["name"] for decision in space["decisions"]]


def _within(search: Search, trials: list[CompletedTrial]) -> list[CompletedTrial]:
    return sorted((t for t in trials if t.seconds <= search.seconds), key=lambda t: t.seconds)


def _plain(value: Any) -> Any:
    """A NumPy scalar (Optuna's, Keras') as the JSON number it stands for."""
    return value.item() if hasattr(value, "item") else value


# -- l2l -----------------------------------------------------------------------------------------


def run_l2l(search: Search, early_stopping: bool = False) -> list[CompletedTrial]:
    """Our service's search: model_based on the Ray executor, with or without ASHA."""
    from l2l.service.jobs import submit_job
    from l2l.service.jobspec import JobSpec

    spec: dict[str, Any] = {
        "space": search.space,
        "strategy": "model_based",
        "final_model": False,  # the benchmark retrains every pick itself, alike for all
        "seed": search.seed,
        "budget": {"trials": UNLIMITED_TRIALS, "concurrency": search.concurrency, "epochs": search.epochs},
    }
    if early_stopping:
        spec["early_stopping"] = {"name": "asha", "settings": {"grace": search.grace, "eta": search.eta}}
    limits = {"max_trials_per_job": UNLIMITED_TRIALS}
    with l2l_service(search.concurrency, limits) as (store, settings, team, _):
        spec["dataset"] = _l2l_dataset(store, settings, team, search.data)
        started = time.time()
        job = submit_job(store, JobSpec.model_validate(spec), settings, team)
        deadline = started + search.seconds
        while time.time() < deadline and not store.get_job(job.id).state.is_finished():
            time.sleep(0.5)
        ended = store.get_job(job.id)
        if ended.state.value == "failed":
            raise RuntimeError(f"the l2l job failed: {ended.reason}")
        if not ended.state.is_finished():
            store.change_job_state(job.id, None, "cancel")
        trials, _ = store.list_trials(job.id, limit=100_000)
    names = decision_names(search.space)
    return _within(
        search,
        [
            CompletedTrial(
                params={name: trial.params[name] for name in names},
                epochs=int(trial.metrics.get("epochs", search.epochs)),
                val_accuracy=float(trial.metrics["val_accuracy"]),
                seconds=trial.finished_at.timestamp() - started,
            )
            for trial in trials
            if trial.state.value == "completed" and trial.finished_at is not None
        ],
    )


def _l2l_dataset(store: Any, settings: Any, team: Any, data: dict[str, Any]) -> Any:
    """A built-in by name; a file through the real upload path, as a team's dataset."""
    if data["name"] != "npz":
        return data["name"]
    from l2l.service.uploads import save_upload

    with open(data["path"], "rb") as handle:
        record = save_upload(
            store, settings, team.id, "generated.npz", handle, name="generated", task=data["task"]
        )
    return {"id": record.id}


# -- KerasTuner ----------------------------------------------------------------------------------


def run_keras_tuner_hyperband(search: Search) -> list[CompletedTrial]:
    """KerasTuner's Hyperband in its distributed mode: a chief oracle and one tuner per slot.

    Each tuner process appends a line per finished trial to a shared file (its own clock
    reading, taken right after the trial's last epoch); KerasTuner itself cannot stop a
    running search, so every process is killed at the deadline, before the file is read.
    """
    folder = Path(tempfile.mkdtemp(prefix="l2l-bench-kt-"))
    records = folder / "trials.jsonl"
    try:
        started = time.time()
        _run_keras_tuner_processes(search, folder, records, deadline=started + search.seconds)
        trials = []
        for line in records.read_text().splitlines() if records.exists() else []:
            row = json.loads(line)
            seconds = row.pop("time") - started
            trials.append(CompletedTrial(**row, seconds=seconds))
        return _within(search, trials)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run_keras_tuner_processes(search: Search, folder: Path, records: Path, deadline: float) -> None:
    config = json.dumps({"search": asdict(search), "directory": str(folder), "records": str(records)})
    env = {
        **os.environ,
        **THREAD_ENV,
        "KERASTUNER_ORACLE_IP": "127.0.0.1",
        "KERASTUNER_ORACLE_PORT": str(free_port()),
    }
    roles = ["chief", *(f"tuner{slot}" for slot in range(search.concurrency))]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for role in roles:
            with (folder / f"{role}.log").open("wb") as log:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-c", _KERAS_TUNER_MAIN, role, config],
                        env={**env, "KERASTUNER_TUNER_ID": role},
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        while time.time() < deadline:
            for role, process in zip(roles, processes, strict=True):
                if process.poll() not in (None, 0):
                    tail = (folder / f"{role}.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"KerasTuner's {role} exited with {process.returncode}: {tail}")
            time.sleep(0.5)
    finally:
        for process in processes:
            process.kill()
            process.wait()


_KERAS_TUNER_MAIN = (
    "import sys; from l2l.bench.training_contenders import keras_tuner_process; "
    "keras_tuner_process(*sys.argv[1:])"
)


def keras_tuner_process(role: str, config: str) -> None:
    """One process of the distributed KerasTuner search (``role`` is its KERASTUNER_TUNER_ID)."""
    from l2l.worker.executor import DEFAULT_BATCH_SIZE
    from l2l.worker.trainer import cached_dataset
    from search_spaces import batch_size_for, get_space

    given = json.loads(config)
    search = Search(**given["search"])
    tuner = _recording_hyperband(search, given["directory"], Path(given["records"]))
    if role == "chief":
        tuner.search(verbose=0)  # serves the oracle until killed
        return
    data = cached_dataset(search.data)
    tuner.search(
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        epochs=search.epochs,
        batch_size=batch_size_for(get_space(search.space), {}, DEFAULT_BATCH_SIZE),
        verbose=0,
    )


def _recording_hyperband(search: Search, directory: str, records: Path) -> Any:
    import keras_tuner

    from l2l.worker.trainer import cached_dataset
    from search_spaces import get_space

    space = get_space(search.space)
    builder = space.load_builder()
    info = cached_dataset(search.data).info

    def build(hp: Any) -> Any:
        return builder(keras_tuner_values(hp, search.space), info, space.settings)

    class RecordingHyperband(keras_tuner.Hyperband):  # type: ignore[misc]
        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
            histories = super().run_trial(trial, *args, **kwargs)
            values = trial.hyperparameters.values
            row = {
                "params": {name: _plain(values[name]) for name in decision_names(search.space)},
                "epochs": int(values.get("tuner/epochs", search.epochs)),
                "val_accuracy": float(histories[-1].history["val_accuracy"][-1]),
                "time": time.time(),
            }
            with records.open("a") as out:  # one short line per write: the tuners do not interleave
                out.write(json.dumps(row) + "\n")
            return histories

    return RecordingHyperband(
        hypermodel=build,
        objective="val_accuracy",
        max_epochs=search.epochs,
        factor=search.eta,
        hyperband_iterations=1000,  # the clock ends the search, never the brackets
        seed=search.seed + 1,  # KerasTuner reads seed 0 as "no seed"
        directory=directory,
        project_name="search",
        overwrite=False,  # the tuners share the chief's folder; overwriting would delete it
    )


def keras_tuner_values(hp: Any, space: dict[str, Any]) -> dict[str, Any]:
    """Our space's decisions drawn through KerasTuner's ``hp``."""
    values: dict[str, Any] = {}
    for decision in space["decisions"]:
        name, kind = decision["name"], decision["type"]
        if kind == "int":
            values[name] = hp.Int(name, decision["low"], decision["high"])
        elif kind == "choice":
            values[name] = hp.Choice(name, decision["options"])
        else:
            sampling = "log" if decision.get("log") else "linear"
            values[name] = hp.Float(name, decision["low"], decision["high"], sampling=sampling)
    return values


# -- Ray Tune ------------------------------------------------------------------------------------


def run_tune_asha_optuna(search: Search) -> list[CompletedTrial]:
    """Ray Tune: OptunaSearch (TPE) proposes, ASHAScheduler stops, ``time_budget_s`` ends it.

    ``reuse_actors=True`` (Tune's default is False): each slot's worker keeps TensorFlow
    loaded between trials, as l2l's warm workers do.
    """
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    class Recorder(tune.Callback):  # type: ignore[misc]
        """Runs in the driver: the clock reading when Tune ends a trial, for any reason."""

        def __init__(self) -> None:
            self.ended: list[tuple[float, dict[str, Any], dict[str, Any]]] = []

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self.ended.append((time.time(), dict(trial.config), dict(trial.last_result or {})))

    folder = Path(tempfile.mkdtemp(prefix="l2l-bench-tune-"))
    recorder = Recorder()
    start_ray(search.concurrency)
    try:
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(tune_trial, search=asdict(search)), {"cpu": 1}),
            param_space=tune_param_space(search.space),
            tune_config=tune.TuneConfig(
                metric="val_accuracy",
                mode="max",
                search_alg=OptunaSearch(seed=search.seed),
                scheduler=ASHAScheduler(
                    time_attr="training_iteration",
                    max_t=search.epochs,
                    grace_period=search.grace,
                    reduction_factor=search.eta,
                ),
                num_samples=-1,
                max_concurrent_trials=search.concurrency,
                time_budget_s=search.seconds,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(storage_path=str(folder), verbose=0, callbacks=[recorder]),
        )
        started = time.time()
        tuner.fit()
    finally:
        ray.shutdown()
        shutil.rmtree(folder, ignore_errors=True)
    names = decision_names(search.space)
    return _within(
        search,
        [
            CompletedTrial(
                params={name: _plain(config[name]) for name in names},
                epochs=int(result["training_iteration"]),
                val_accuracy=float(result["val_accuracy"]),
                seconds=ended - started,
            )
            for ended, config, result in recorder.ended
            if "val_accuracy" in result  # a trial stopped before its first epoch has none
        ],
    )


def tune_param_space(space: dict[str, Any]) -> dict[str, Any]:
    """Our space's decisions as Tune's domains (randint's upper end is exclusive)."""
    from ray import tune

    domains: dict[str, Any] = {}
    for decision in space["decisions"]:
        name, kind = decision["name"], decision["type"]
        if kind == "int":
            domains[name] = tune.randint(decision["low"], decision["high"] + 1)
        elif kind == "choice":
            domains[name] = tune.choice(decision["options"])
        elif decision.get("log"):
            domains[name] = tune.loguniform(decision["low"], decision["high"])
        else:
            domains[name] = tune.uniform(decision["low"], decision["high"])
    return domains


def tune_trial(config: dict[str, Any], search: dict[str, Any]) -> None:
    """A Tune user's trainable: the same builder and data, one report per epoch."""
    for name, value in THREAD_ENV.items():
        os.environ.setdefault(name, value)
    import keras
    from ray import tune

    from l2l.worker.executor import DEFAULT_BATCH_SIZE
    from l2l.worker.trainer import cached_dataset
    from search_spaces import batch_size_for, get_space

    space = get_space(search["space"])
    data = cached_dataset(search["data"])
    params = {name: _plain(config[name]) for name in decision_names(search["space"])}
    model = space.load_builder()(params, data.info, space.settings)

    class Report(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            tune.report({"val_accuracy": float((logs or {})["val_accuracy"])})

    model.fit(
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        epochs=search["epochs"],
        batch_size=batch_size_for(space, params, DEFAULT_BATCH_SIZE),
        verbose=0,
        callbacks=[Report()],
    )


CONTENDERS: dict[str, Callable[[Search], list[CompletedTrial]]] = {
    "l2l": run_l2l,
    "l2l_asha": lambda search: run_l2l(search, early_stopping=True),
    "kt_hyperband": run_keras_tuner_hyperband,
    "tune_asha_optuna": run_tune_asha_optuna,
}
