"""``l2l bench overhead``: what a trial costs beyond its training, side by side in one run.

Contenders, each training the same fixed 2x64 MLP on digits for ``epochs`` epochs,
``trials`` trials, ``concurrency`` at a time (1 CPU each), in an order rotated every repeat:

* ``l2l``: the real job loop (:class:`l2l.loop.JobLoop`, event-driven) with the Ray executor's
  warm workers, reporting over HTTP to ``l2l serve --no-controller`` (its own process, SQLite);
* ``tune_reuse`` / ``tune_no_reuse``: Ray Tune with ``reuse_actors=True`` / ``False`` (its
  default), a function trainable that loads the data and builds the model as a Tune user would;
* ``plain``: a plain Python loop in one fresh process, one trial at a time (data + build + fit).

Overhead = time per trial per slot minus the run's median fit, where time per trial per
slot is measured from the end of the ``concurrency``-th trial to the end of the last
(``window * slots / (trials - slots)``): the first trial on each worker (the framework's
import) is left out for everyone; a contender that starts a process per trial pays it in
every trial, which is its real cost.

The no-op part runs ``noop_trials`` tabular NAS-Bench-201 trials (a table look-up, nothing
to train) through the same l2l path and through Ray Tune with actor reuse.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

#: A 2x64 ReLU MLP (the mlp template's defaults); the learning rate "decision" spans
#: 1e-3 to 1.0001e-3, so every trial trains the same model and no strategy runs dry.
FIXED_MLP_SPACE = {
    "name": "mlp-2x64",
    "template": "mlp",
    "decisions": [{"name": "learning_rate", "type": "float", "low": 1e-3, "high": 1.0001e-3}],
}
NOOP_SPACE = {"name": "nb201_cell", "settings": {"tabular": "cifar10"}}
CONTENDERS = ("l2l", "tune_reuse", "tune_no_reuse", "plain")
#: One thread per trial, as l2l's workers run: the same for every contender.
THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}


def run_overhead(
    *,
    trials: int = 20,
    concurrency: int = 2,
    epochs: int = 2,
    repeats: int = 3,
    noop_trials: int = 200,
    contenders: tuple[str, ...] = CONTENDERS,
    no_reuse_trials: int | None = None,
    log: Callable[[str], None] = print,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run every contender ``repeats`` times (order rotated) and the no-op pair once per repeat.

    ``no_reuse_trials`` (default ``trials``) caps Ray Tune without actor reuse, whose every
    trial starts a process and imports the framework, where a loaded machine cannot wait.
    """
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
    noop: dict[str, list[dict[str, Any]]] = {"l2l": [], "tune_reuse": []} if noop_trials else {}
    document = {
        "protocol": {
            "trials": trials,
            "concurrency": concurrency,
            "epochs": epochs,
            "repeats": repeats,
            "noop_trials": noop_trials,
            "no_reuse_trials": no_reuse_trials or trials,
            "model": "2x64 ReLU MLP on digits",
        },
        "runs": runs,
        "noop": noop,
        "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()},
    }
    for repeat in range(repeats):
        shift = repeat % max(1, len(contenders))
        order = contenders[shift:] + contenders[:shift]
        for name in order:
            log(f"repeat {repeat + 1}/{repeats}: {name}")
            count = no_reuse_trials or trials if name == "tune_no_reuse" else trials
            run = _RUNNERS[name](count, concurrency, epochs)
            runs[name].append(_summarise(run, concurrency))
            last = runs[name][-1]
            log(f"  overhead {last['overhead_s']:.3f} s, median fit {last['median_fit_s']:.3f} s")
            if checkpoint:
                checkpoint(document)
        for name in list(noop) if repeat % 2 == 0 else list(noop)[::-1]:
            log(f"repeat {repeat + 1}/{repeats}: no-op trials, {name}")
            run = (_l2l_noop if name == "l2l" else _tune_noop)(noop_trials, concurrency)
            noop[name].append(_summarise(run, concurrency))
            log(f"  {noop[name][-1]['per_trial_s'] * 1000:.1f} ms per trial")
            if checkpoint:
                checkpoint(document)
    document["machine"]["load_average_at_end"] = os.getloadavg()
    return document


def _summarise(run: dict[str, Any], slots: int) -> dict[str, Any]:
    ends = sorted(run["ends"])
    slots = min(slots, run.get("slots", slots))
    window = ends[-1] - ends[slots - 1]
    per_trial_per_slot = window * slots / (len(ends) - slots)
    fits = run.get("fits") or [0.0]
    median_fit = statistics.median(fits)
    return {
        "per_trial_s": window / (len(ends) - slots),
        "per_trial_per_slot_s": per_trial_per_slot,
        "median_fit_s": median_fit,
        "overhead_s": per_trial_per_slot - median_fit,
        "first_trial_s": run.get("first_trial_s"),
        "trials": len(ends),
    }


# -- l2l -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def l2l_service(
    concurrency: int, team_limits: dict[str, Any] | None = None
) -> Iterator[tuple[Any, Any, Any, Any]]:
    """``l2l serve --no-controller`` in its own process, and this process's job loop on Ray.

    Yields (store, settings, team, executor); ``team_limits`` are the team's own limits
    (e.g. ``max_trials_per_job`` above the default for a search stopped by a clock).
    """
    from l2l.loop import JobLoop
    from l2l.service.jobs import create_team
    from l2l.settings import Settings
    from l2l.store import Store
    from l2l.worker.ray_executor import RayExecutor

    folder = Path(tempfile.mkdtemp(prefix="l2l-overhead-"))
    port = free_port()
    url = f"sqlite:///{folder / 'l2l.db'}"
    env = {**os.environ, "L2L_DATABASE_URL": url, "L2L_DATA_DIR": str(folder), "L2L_SERVE__ENABLED": "false"}
    server = subprocess.Popen(
        [sys.executable, "-m", "l2l.client.cli", "serve", "--no-controller", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    executor = None
    stop = threading.Event()
    driver = None
    try:
        # /health/live: /health answers 503 until a controller beats, and ours starts below.
        _wait_for_server(f"http://127.0.0.1:{port}/health/live", server)
        settings = Settings(data_dir=folder, database_url=url, api={"port": port})
        store = Store(url)
        team, _ = create_team(store, "bench", team_limits)
        os.environ.update(THREAD_ENV)
        start_ray(concurrency)  # the executor joins it
        executor = RayExecutor(idle_seconds=600)
        loop = JobLoop(store, executor, settings)
        driver = threading.Thread(target=loop.run, args=(stop,), daemon=True)
        driver.start()
        yield store, settings, team, executor
    finally:
        stop.set()
        if driver is not None:
            driver.join(timeout=60)
        if executor is not None:
            executor.shutdown()
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=30)
        if server.poll() is None:
            server.kill()
        shutil.rmtree(folder, ignore_errors=True)


def _run_job(store: Any, settings: Any, team: Any, spec: dict[str, Any], seconds: float = 1800) -> int:
    from l2l.service.jobs import submit_job
    from l2l.service.jobspec import JobSpec

    job = submit_job(store, JobSpec.model_validate(spec), settings, team)
    deadline = time.monotonic() + seconds
    while not store.get_job(job.id).state.is_finished():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the benchmark job {job.id} did not finish in {seconds} s")
        time.sleep(0.05)
    finished = store.get_job(job.id)
    if finished.state.value != "completed":
        raise RuntimeError(f"the benchmark job failed: {finished.reason}")
    return job.id


def _ends_and_fits(store: Any, job_id: int) -> dict[str, Any]:
    trials, _ = store.list_trials(job_id, limit=100_000)
    failed = [t.error for t in trials if t.state.value != "completed"]
    if failed:
        raise RuntimeError(f"benchmark trials failed: {failed[:2]}")
    return {
        "ends": [t.finished_at.timestamp() for t in trials],
        "fits": [t.metrics["train_seconds"] for t in trials if "train_seconds" in t.metrics],
    }


def _l2l(trials: int, concurrency: int, epochs: int) -> dict[str, Any]:
    spec = {
        "dataset": "digits",
        "space": FIXED_MLP_SPACE,
        "strategy": "random",
        "final_model": False,
        "seed": 0,
        "budget": {"trials": concurrency, "concurrency": concurrency, "epochs": epochs},
    }
    with l2l_service(concurrency) as (store, settings, team, _):
        started = time.monotonic()
        _run_job(store, settings, team, spec)  # warms the workers: the framework's import
        first = time.monotonic() - started
        spec["budget"] = {**spec["budget"], "trials": trials}
        return {**_ends_and_fits(store, _run_job(store, settings, team, spec)), "first_trial_s": first}


def _l2l_noop(trials: int, concurrency: int) -> dict[str, Any]:
    spec = {
        "dataset": "digits",  # a placeholder: the table is the tabular space's data
        "space": NOOP_SPACE,
        "strategy": "random",
        "final_model": False,
        "seed": 0,
        "budget": {"trials": concurrency, "concurrency": concurrency, "epochs": 1},
    }
    with l2l_service(concurrency) as (store, settings, team, _):
        _run_job(store, settings, team, spec)
        spec["budget"] = {**spec["budget"], "trials": trials}
        return _ends_and_fits(store, _run_job(store, settings, team, spec))


# -- Ray Tune ------------------------------------------------------------------------------------


def _tune_mlp_trial(config: dict[str, Any]) -> None:
    """A Tune user's trainable: load the data, build the same model, fit, report."""
    from ray import tune

    for name, value in THREAD_ENV.items():
        os.environ.setdefault(name, value)
    from l2l.service.datasets import load_dataset
    from search_spaces import get_space

    data = load_dataset("digits")
    space = get_space(FIXED_MLP_SPACE)
    model = space.load_builder()({"learning_rate": 1e-3}, data.info, space.settings)
    started = time.perf_counter()
    history = model.fit(
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        epochs=config["epochs"],
        batch_size=32,
        verbose=0,
    )
    fit = time.perf_counter() - started
    tune.report({"val_accuracy": history.history["val_accuracy"][-1], "fit_seconds": fit, "end": time.time()})


def _tune_noop_trial(config: dict[str, Any]) -> None:
    from ray import tune

    from search_spaces import get_space
    from search_spaces.nb201_table import tabular_metrics

    space = get_space(NOOP_SPACE)
    cell = space.sample(random.Random(config["seed"]))
    metrics = tabular_metrics(space, cell)
    tune.report({**metrics, "fit_seconds": 0.0, "end": time.time()})


def _tune(
    trainable: Callable[[dict[str, Any]], None],
    trials: int,
    concurrency: int,
    reuse: bool,
    config: dict[str, Any],
) -> dict[str, Any]:
    import ray
    from ray import tune

    folder = Path(tempfile.mkdtemp(prefix="l2l-overhead-tune-"))
    start_ray(concurrency)
    try:
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space={**config, "seed": tune.randint(0, 1_000_000)},
            tune_config=tune.TuneConfig(
                num_samples=trials, max_concurrent_trials=concurrency, reuse_actors=reuse
            ),
            run_config=tune.RunConfig(storage_path=str(folder), verbose=0),
        )
        started = time.time()
        results = tuner.fit()
        frame = results.get_dataframe()
        ends = [float(end) for end in frame["end"]]
        fits = [float(fit) for fit in frame["fit_seconds"]]
        if len(ends) != trials:
            raise RuntimeError(f"Ray Tune finished {len(ends)} of {trials} trials")
        return {"ends": ends, "fits": fits, "first_trial_s": min(ends) - started}
    finally:
        ray.shutdown()
        shutil.rmtree(folder, ignore_errors=True)


def start_ray(cpus: int, tries: int = 3, env: Mapping[str, str] = THREAD_ENV) -> None:
    """``ray.init`` for a contender, its workers given ``env``; a loaded machine sometimes misses
    Ray's start-up timeout, so it tries again."""
    import ray

    for attempt in range(tries):
        try:
            ray.init(
                num_cpus=cpus,
                include_dashboard=False,
                log_to_driver=False,
                runtime_env={"env_vars": dict(env)},
            )
            return
        except Exception:
            ray.shutdown()
            if attempt == tries - 1:
                raise
            time.sleep(10)


def _tune_reuse(trials: int, concurrency: int, epochs: int) -> dict[str, Any]:
    return _tune(_tune_mlp_trial, trials, concurrency, True, {"epochs": epochs})


def _tune_no_reuse(trials: int, concurrency: int, epochs: int) -> dict[str, Any]:
    return _tune(_tune_mlp_trial, trials, concurrency, False, {"epochs": epochs})


def _tune_noop(trials: int, concurrency: int) -> dict[str, Any]:
    return _tune(_tune_noop_trial, trials, concurrency, True, {})


# -- a plain loop --------------------------------------------------------------------------------


def _plain(trials: int, concurrency: int, epochs: int) -> dict[str, Any]:
    """One fresh process trains the trials one after another; each loads the data and builds."""
    script = (
        "import json, sys; from l2l.bench.overhead import plain_loop; "
        f"print(json.dumps(plain_loop({trials}, {epochs})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, **THREAD_ENV},
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    )
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "slots": 1}


def plain_loop(trials: int, epochs: int) -> dict[str, Any]:
    """Train the fixed MLP ``trials`` times in this process; each trial's end time and fit seconds."""
    from l2l.service.datasets import load_dataset
    from search_spaces import get_space

    ends, fits = [], []
    for _ in range(trials):
        data = load_dataset("digits")
        space = get_space(FIXED_MLP_SPACE)
        model = space.load_builder()({"learning_rate": 1e-3}, data.info, space.settings)
        started = time.perf_counter()
        model.fit(
            data.x_train,
            data.y_train,
            validation_data=(data.x_val, data.y_val),
            epochs=epochs,
            batch_size=32,
            verbose=0,
        )
        fits.append(time.perf_counter() - started)
        ends.append(time.time())
    return {"ends": ends, "fits": fits}


_RUNNERS: dict[str, Callable[[int, int, int], dict[str, Any]]] = {
    "l2l": _l2l,
    "tune_reuse": _tune_reuse,
    "tune_no_reuse": _tune_no_reuse,
    "plain": _plain,
}


# -- helpers and the report ----------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_server(url: str, server: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"l2l serve exited with {server.returncode} before answering")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"l2l serve did not answer at {url} in {seconds} s")


def format_report(document: dict[str, Any]) -> str:
    """A Markdown table: per contender, median (min-max over repeats) of overhead and fit."""
    lines = [
        "| contender | overhead beyond fit, s | time per trial per slot, s | median fit, s | "
        "overhead / l2l's (same repeat) |",
        "| --- | --- | --- | --- | --- |",
    ]
    runs = document["runs"]
    ours = [run["overhead_s"] for run in runs.get("l2l", [])]
    for name, entries in runs.items():
        if not entries:
            continue
        over = [run["overhead_s"] for run in entries]
        ratio = (
            ""
            if name == "l2l" or not ours
            else _spread([o / max(u, 1e-3) for o, u in zip(over, ours, strict=False)], "x")
        )
        lines.append(
            f"| {name} | {_spread(over)} | {_spread([r['per_trial_per_slot_s'] for r in entries])} | "
            f"{_spread([r['median_fit_s'] for r in entries])} | {ratio} |"
        )
    if document.get("noop"):
        lines += [
            "",
            "| no-op trials | ms per trial (wall, all slots) | ms per trial per slot |",
            "| --- | --- | --- |",
        ]
        for name, entries in document["noop"].items():
            lines.append(
                f"| {name} | {_spread([r['per_trial_s'] * 1000 for r in entries], '', 1)} | "
                f"{_spread([r['per_trial_per_slot_s'] * 1000 for r in entries], '', 1)} |"
            )
    return "\n".join(lines)


def _spread(values: list[float], unit: str = "", digits: int = 3) -> str:
    middle = statistics.median(values)
    return f"{middle:.{digits}f}{unit} ({min(values):.{digits}f}-{max(values):.{digits}f})"
