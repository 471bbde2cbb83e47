"""The service layer: what the API (and the command line) may do, in the product's terms.

Routes call these functions and nothing lower; each takes the store explicitly so it
works the same from a web request, a CLI command or a test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import re
import secrets
import shutil
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import httpx

from controller.early_stopping import Decision, Scheduler, create_scheduler
from l2l.rewards import reward_from_metrics, why_no_reward
from l2l.service.chance import chance_warning
from l2l.service.jobspec import InvalidJob, JobSpec, validate_job
from l2l.service.step_writer import StepWriter
from l2l.settings import Settings
from l2l.store import AlreadySubmitted, FinalModelFinished, NotFound, Store, TrialFinished
from l2l.store.records import FinalModelRecord, JobRecord, TeamRecord, TrialRecord
from l2l.store.states import TrialState
from l2l.store.step_reports import StepOutcome, StepReport, StepResult


class Forbidden(Exception):
    """The caller's credentials do not allow this."""


class Unauthorized(Exception):
    """No credentials, or credentials the service does not know."""


class OverLimit(Exception):
    """The team is at one of its limits; the message says which and how to get under it."""


#: Resources that count against a team's accelerator limit.
ACCELERATORS = ("GPU", "TPU")

#: What a team name may look like: it appears in URLs, logs and the command line.
TEAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class NotRunning(Exception):
    """The trial is not in a state that accepts reports."""


@dataclass(frozen=True)
class ReportOutcome:
    trial: TrialRecord
    #: False when the report changed nothing (a repeat, or a report of a finished trial).
    changed: bool
    message: str
    #: What the worker does next: "continue", or "stop" (early stopping ended the trial).
    decision: str = "continue"


def new_report_token() -> tuple[str, str]:
    """A fresh per-attempt token and the hash the store keeps of it."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_team(store: Store, name: str, limits: Mapping[str, Any] | None = None) -> tuple[TeamRecord, str]:
    """Make a team and its first API key; the key is returned here and never again."""
    if not TEAM_NAME.match(name):
        raise ValueError(
            f"team name {name!r} must be 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    team = store.create_team(name, {k: v for k, v in (limits or {}).items() if v is not None})
    return team, issue_api_key(store, team.id)


def issue_api_key(store: Store, team_id: int) -> str:
    key = f"l2l_{secrets.token_urlsafe(32)}"
    store.add_api_key(team_id, hash_token(key))
    return key


def authenticate(store: Store, key: str | None) -> TeamRecord:
    if not key:
        raise Unauthorized("send your team's API key as 'Authorization: Bearer <key>'")
    team = store.team_for_key(hash_token(key))
    if team is None:
        raise Unauthorized("this API key is not known (or was revoked); ask your admin for a new one")
    return team


class IdempotencyKeyReused(Exception):
    """The team sent this idempotency key before with a different job."""


def submit_job_once(
    store: Store, spec: JobSpec, settings: Settings, team: TeamRecord | None, idempotency_key: str
) -> tuple[JobRecord, bool]:
    """Queue a job at most once per (team, ``idempotency_key``): the job and whether it is new.

    A retry with the same key and the same body gets the first job back, unchecked (its
    limits were checked when it was stored); the same key with another body raises
    :class:`IdempotencyKeyReused`. Two submits racing with one key store one job.
    """
    request_hash = hashlib.sha256(
        json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    team_id = team.id if team else None
    try:
        existing = store.job_by_idempotency_key(team_id, idempotency_key)
        if existing is None:
            return submit_job(store, spec, settings, team, (idempotency_key, request_hash)), True
    except AlreadySubmitted as race:
        existing = race.job
    if existing.request_hash != request_hash:
        raise IdempotencyKeyReused(
            f"the Idempotency-Key {idempotency_key!r} was used for job {existing.id} with another body; "
            "send a new key for a new job"
        )
    return existing, False


def submit_job(
    store: Store,
    spec: JobSpec,
    settings: Settings,
    team: TeamRecord | None = None,
    idempotency: tuple[str, str] | None = None,
) -> JobRecord:
    """Validate and queue a job; raises InvalidJob or OverLimit (nothing stored) if it cannot run.

    ``idempotency`` is (key, request hash) to store with the job (see :func:`submit_job_once`).
    """
    data_name, rows, uploaded = None, None, None
    if isinstance(spec.dataset, Mapping) and "id" in spec.dataset:
        uploaded = _uploaded_dataset(store, spec.dataset, team)
        data_name, rows = uploaded.pop("display_name"), uploaded.pop("rows")
    normalised = validate_job(spec, settings, rows, uploaded)
    if team is not None:
        _check_team_limits(store, team, normalised, settings)
    if "warm_start" in normalised:
        _check_warm_start(store, normalised, team)
    if normalised.get("kind") == "placement":
        check_placement_job(store, normalised, team)
        name = spec.name or _placement_job_name(normalised["placement"])
    else:
        space_name = normalised["space"].get("name") or "keras_tuner"
        data_name = data_name or _dataset_name(normalised["dataset"])
        name = spec.name or f"{normalised['strategy']['name']} on {data_name} ({space_name})"
    key, request_hash = idempotency or (None, None)
    return store.create_job(
        name, normalised, team_id=team.id if team else None, idempotency_key=key, request_hash=request_hash
    )


def _placement_job_name(placement: Mapping[str, Any]) -> str:
    source = placement["graph"]
    what = source.get("benchmark") or (
        f"graph {source['graph_id']}" if "graph_id" in source else f"the model of job {source.get('job_id')}"
    )
    cluster = placement["cluster"]
    where = cluster if isinstance(cluster, str) else cluster.get("name", "a custom cluster")
    return f"place {what} on {where} ({placement['strategy']['name']})"


def job_kind(job: JobRecord) -> str:
    """``search`` or ``placement``; jobs stored before placement existed are searches."""
    kind: str = job.spec.get("kind", "search")
    return kind


def check_placement_job(store: Store, job: Mapping[str, Any], team: TeamRecord | None) -> None:
    """Refuse a placement job whose graph or earlier job this team cannot use (InvalidJob)."""
    source = job["placement"]["graph"]
    team_id = team.id if team else None
    if "graph_id" in source:
        try:
            store.get_graph(source["graph_id"], team_id)
        except NotFound:
            raise InvalidJob(
                f"placement.graph: no uploaded graph {source['graph_id']} of this team; see GET /graphs"
            ) from None
    elif "job_id" in source:
        placeable_job(store, source["job_id"], team_id)


def placeable_job(store: Store, job_id: int, team_id: int | None) -> JobRecord:
    try:
        earlier = store.get_job(job_id, team_id)
    except NotFound:
        raise InvalidJob(f"placement.graph: no job {job_id} of this team; see GET /jobs") from None
    if job_kind(earlier) != "search":
        raise InvalidJob(f"placement.graph: job {job_id} is a placement job; name a search job's model")
    if not earlier.state.is_finished():
        raise InvalidJob(
            f"placement.graph: job {job_id} is {earlier.state.value}; place its model once it has finished"
        )
    if best_trial(store, earlier) is None:
        raise InvalidJob(f"placement.graph: job {job_id} has no completed trial whose model could be placed")
    return earlier


def best_trial(store: Store, job: JobRecord) -> TrialRecord | None:
    """The job's best trial: the one marked when it ended, else its highest reward so far."""
    if job.best_trial_id is not None:
        return store.get_trial(job.best_trial_id)
    completed, _ = store.list_trials(
        job.id, states={TrialState.COMPLETED}, sort="reward", descending=True, limit=1
    )
    return completed[0] if completed else None


def _uploaded_dataset(store: Store, given: Mapping[str, Any], team: TeamRecord | None) -> dict[str, Any]:
    """The loader spec of a team's uploaded dataset, named in a job as {"id": N}."""
    extra = sorted(set(given) - {"id"})
    if extra:
        raise InvalidJob(f"dataset: an uploaded dataset is named by its id alone; remove {extra}")
    dataset_id = given["id"]
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, int) or not 0 < dataset_id < 2**63:
        raise InvalidJob("dataset: an uploaded dataset's id is a positive whole number; see GET /datasets")
    try:
        dataset = store.get_dataset(dataset_id, team.id if team else None)
    except NotFound:
        raise InvalidJob(f"dataset: no uploaded dataset {dataset_id} here; see GET /datasets") from None
    rows = dataset.summary.get("rows")
    return {**dataset.spec, "dataset_id": dataset.id, "display_name": dataset.name, "rows": rows}


def _dataset_name(dataset: Mapping[str, Any]) -> str:
    """What a job's name calls a built-in dataset (an upload goes by its own name)."""
    return str(dataset["name"])


def _check_warm_start(store: Store, job: Mapping[str, Any], team: TeamRecord | None) -> None:
    """Refuse a warm start from a job the strategy could not learn from.

    The earlier job must be the same team's, have run (it has a saved strategy state),
    use the same strategy and search the same decisions; its dataset may differ.
    """
    job_id = job["warm_start"]["job_id"]
    try:
        earlier = store.get_job(job_id, team.id if team else None)
    except NotFound:
        raise InvalidJob(f"warm_start: no job {job_id} of this team; see GET /jobs") from None
    if job_kind(earlier) != "search":
        raise InvalidJob(f"warm_start: job {job_id} is a placement job; start from a search job")
    if earlier.strategy_state is None or earlier.space is None:
        raise InvalidJob(
            f"warm_start: job {job_id} is {earlier.state.value} and has not learned anything yet; "
            "start from a job that has run"
        )
    if earlier.spec["strategy"]["name"] != job["strategy"]["name"]:
        raise InvalidJob(
            f"warm_start: job {job_id} used strategy {earlier.spec['strategy']['name']!r}, "
            f"this job {job['strategy']['name']!r}; a strategy can only start from its own kind"
        )
    if _space_decisions(job["space"]) != (earlier.space or {}).get("decisions"):
        raise InvalidJob(
            f"warm_start: job {job_id} searched other decisions than this job's space; "
            "start from a job on the same space (its dataset may differ)"
        )


def _space_decisions(space: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The decisions of a normalised space description; None for a KerasTuner build function,
    whose decisions only Keras could tell (so a warm start never matches it)."""
    decisions = space.get("decisions")
    return list(decisions) if decisions is not None else None


def _check_team_limits(store: Store, team: TeamRecord, job: Mapping[str, Any], settings: Settings) -> None:
    defaults = settings.limits
    budget = job["budget"]
    max_trials = team.max_trials_per_job or defaults.max_trials_per_job
    if budget["trials"] > max_trials:
        raise InvalidJob(
            f"budget.trials is {budget['trials']}; team {team.name} may run at most {max_trials}"
        )
    per_trial = sum(amount for name, amount in budget["resources"].items() if name in ACCELERATORS)
    held = per_trial * budget["concurrency"]
    max_held = team.max_accelerators_per_job or defaults.max_accelerators_per_job
    if held > max_held:
        raise InvalidJob(
            f"this job would hold {held:g} accelerators ({per_trial:g} per trial x concurrency "
            f"{budget['concurrency']}); team {team.name} may hold at most {max_held:g} per job"
        )
    max_jobs = team.max_concurrent_jobs or defaults.max_concurrent_jobs
    if store.count_unfinished_jobs(team.id) >= max_jobs:
        raise OverLimit(
            f"team {team.name} already has {max_jobs} unfinished jobs, its limit; "
            "wait for one to end or cancel one"
        )


def check_report_token(store: Store, trial_id: int, token: str | None) -> None:
    """Raise Forbidden unless ``token`` is the current token of trial ``trial_id``."""
    expected = store.trial_token_hash(trial_id)  # raises NotFound for an unknown trial
    if not token:
        raise Forbidden("send the trial's report token as 'Authorization: Bearer <token>'")
    if expected is None or not hmac.compare_digest(expected, hash_token(token)):
        raise Forbidden(f"this token does not belong to trial {trial_id}'s current attempt")


def report_trial(
    store: Store,
    trial_id: int,
    token: str | None,
    metrics: Mapping[str, Any],
    *,
    step: int | None = None,
    final: bool = False,
) -> ReportOutcome:
    """Take a worker's report: intermediate metrics at ``step``, or the final metrics.

    Idempotent: reporting a finished trial again changes nothing and says so. A final
    report whose objective metric is missing or not finite fails the trial.
    """
    if not final and step is not None:
        [result] = store.record_steps([step_report(trial_id, token, step, metrics)])
        return decide_early_stopping(store, step_outcome(trial_id, step, result), step, metrics)
    check_report_token(store, trial_id, token)
    trial = store.get_trial(trial_id)
    if trial.state.is_finished():
        return ReportOutcome(trial, False, f"trial {trial_id} already {trial.state.value}; report ignored")
    if trial.state is not TrialState.RUNNING:
        raise NotRunning(f"trial {trial_id} is {trial.state.value}, not running; it cannot take reports")
    try:
        if not final:  # (with a step it took the path above)
            raise ValueError("an intermediate report needs a 'step' (e.g. the epoch number)")
        if step is not None:  # a repeat of it inserts nothing (ON CONFLICT DO NOTHING), not an error
            store.record_steps([step_report(trial_id, token, step, metrics)])
        objective = store.get_job(trial.job_id).spec["objective"]
        reward = reward_from_metrics(metrics, objective)
        if reward is None:
            failed = store.set_trial_state(
                trial_id, TrialState.FAILED, metrics=metrics, error=why_no_reward(metrics, objective)
            )
            return ReportOutcome(failed, True, f"trial {trial_id} failed: {failed.error}")
        done = store.set_trial_state(trial_id, TrialState.COMPLETED, reward=reward, metrics=metrics)
        return ReportOutcome(done, True, f"trial {trial_id} completed with reward {reward:.6g}")
    except TrialFinished as finished:
        # Another report of the same trial won the race; this one changes nothing.
        return ReportOutcome(finished.trial, False, f"{finished}; report ignored")


def early_stopping_scheduler(
    store: Store, job: JobRecord
) -> tuple[Scheduler, dict[tuple[int, int], Decision]]:
    """The job's early-stopping scheduler rebuilt from its stored epoch reports, and the
    decision it gave each report, keyed by (line number, epoch).

    The scheduler's state is a function of the stored reports in their stored order: every
    API replica and the controller replay the same rows and reach the same decisions, a
    controller restart loses nothing, and no scheduler state is stored apart from them.
    Scheduler trial ids are the numbers of the first trial of each configuration's line.
    """
    scheduler = create_scheduler(job.spec.get("early_stopping"), job.budget["epochs"])
    objective = job.spec["objective"]
    decisions: dict[tuple[int, int], Decision] = {}
    for point in store.job_curves(job.id):
        value = reward_from_metrics(point.values, objective)
        if value is not None:  # an epoch without a usable value teaches nothing
            decision = scheduler.on_report(point.line_number, point.epoch, value)
            decisions.setdefault((point.line_number, point.epoch), decision)
    return scheduler, decisions


#: Per store, the jobs known to have no early stopping (a job's spec never changes): their
#: reports skip the check. Keyed by the store object, not its URL: a database emptied and
#: refilled (tests do this) reuses job ids, and a store's cache goes with the store.
_NO_EARLY_STOPPING: weakref.WeakKeyDictionary[Store, set[int]] = weakref.WeakKeyDictionary()


def decide_early_stopping(
    store: Store, outcome: ReportOutcome, step: int, metrics: Mapping[str, Any]
) -> ReportOutcome:
    """``outcome`` of an intermediate report with the job's early-stopping decision.

    A trial that is no longer running is told to stop; a running one of a job with early
    stopping may be stopped here (:func:`_stop_early`); anything else trains on.
    """
    trial = outcome.trial
    if trial.state.is_finished():
        return dataclasses.replace(outcome, decision="stop")
    known_plain = _NO_EARLY_STOPPING.setdefault(store, set())
    if trial.job_id in known_plain or trial.state is not TrialState.RUNNING:
        return outcome
    if not store.get_job(trial.job_id).spec.get("early_stopping"):
        known_plain.add(trial.job_id)
        return outcome
    return _stop_early(store, trial, step, metrics) or outcome


def _stop_early(
    store: Store, trial: TrialRecord, step: int, metrics: Mapping[str, Any]
) -> ReportOutcome | None:
    """Under early stopping, end ``trial`` at epoch ``step + 1`` if its job's scheduler says so.

    The stopped trial completes with this epoch's reward and metrics, plus ``epochs`` (how far
    it trained) and ``early_stopped``; its curve stays as reported. None: it trains on.
    """
    job = store.get_job(trial.job_id)
    if not job.spec.get("early_stopping") or step + 1 >= job.budget["epochs"]:
        return None
    line_number = trial.number if trial.resumes_trial_id is None else store.get_trial(trial.line).number
    _, decisions = early_stopping_scheduler(store, job)
    if decisions.get((line_number, step + 1)) is not Decision.STOP:
        return None
    reward = reward_from_metrics(metrics, job.spec["objective"])
    assert reward is not None  # a report without a usable value gets no decision
    stopped_metrics = {**metrics, "epochs": step + 1, "early_stopped": 1}
    try:
        done = store.set_trial_state(trial.id, TrialState.COMPLETED, reward=reward, metrics=stopped_metrics)
    except TrialFinished as finished:
        return ReportOutcome(finished.trial, False, f"{finished}; report ignored", "stop")
    return ReportOutcome(
        done, True, f"trial {trial.id} stopped early at epoch {step + 1} with reward {reward:.6g}", "stop"
    )


def step_report(trial_id: int, token: str | None, step: int, metrics: Mapping[str, Any]) -> StepReport:
    """The store's form of an intermediate report (the token is only ever kept hashed)."""
    return StepReport(trial_id, step, hash_token(token or ""), dict(metrics))


def step_outcome(trial_id: int, step: int, result: StepResult) -> ReportOutcome:
    """What the worker is told about its intermediate report (raises as :func:`report_trial`)."""
    outcome = result.outcome
    if outcome is StepOutcome.NOT_FOUND:
        raise NotFound(f"trial {trial_id} not found")
    if outcome is StepOutcome.FORBIDDEN:
        raise Forbidden(f"this token does not belong to trial {trial_id}'s current attempt")
    trial = result.trial
    assert trial is not None  # the store returns the trial for every other outcome
    if outcome is StepOutcome.NOT_RUNNING:
        raise NotRunning(f"trial {trial_id} is {trial.state.value}, not running; it cannot take reports")
    if outcome is StepOutcome.FINISHED:
        return ReportOutcome(trial, False, f"trial {trial_id} already {trial.state.value}; report ignored")
    if outcome is StepOutcome.REPEAT:
        return ReportOutcome(trial, False, f"step {step} was already recorded; ignored")
    return ReportOutcome(trial, True, f"step {step} recorded")


async def report_step(
    writer: StepWriter, trial_id: int, token: str, step: int, metrics: Mapping[str, Any]
) -> ReportOutcome:
    """An intermediate report through the group-commit writer: the API's hot path.

    The same checks and answers as :func:`report_trial` (token, then the trial's state), in one
    shared transaction; answered only once that transaction committed.
    """
    result = await writer.record(step_report(trial_id, token, step, metrics))
    outcome = step_outcome(trial_id, step, result)
    if outcome.trial.job_id in _NO_EARLY_STOPPING.get(writer.store, ()):  # most jobs: no thread hop, no query
        return outcome
    return await asyncio.to_thread(decide_early_stopping, writer.store, outcome, step, metrics)


def job_progress(store: Store, job: JobRecord) -> dict[str, Any]:
    counts = store.trial_counts(job.id)
    best = store.get_trial(job.best_trial_id) if job.best_trial_id is not None else None
    if best is None:
        completed, _ = store.list_trials(
            job.id, states={TrialState.COMPLETED}, sort="reward", descending=True, limit=1
        )
        best = completed[0] if completed else None
    final = store.get_final_model(job.id)
    tested = final.test_metrics if final is not None and final.state is TrialState.COMPLETED else None
    warning = chance_warning(job.chance, best.metrics if best else None, tested)
    return {"counts": counts, "best": best, "final_model": final, "warning": warning}


#: Files a final model comes with: the Keras file, how raw rows become its inputs, and
#: where TensorFlow ran it, a zipped SavedModel.
MODEL_FORMATS = {
    "keras": "model.keras",
    "preprocessing": "preprocessing.json",
    "savedmodel": "savedmodel.zip",
}


def report_final_model(
    store: Store,
    settings: Settings,
    job_id: int,
    token: str | None,
    metrics: Mapping[str, Any],
    files: Mapping[str, BinaryIO],
) -> FinalModelRecord:
    """Take a worker's final model: its files and its one score on the test part.

    Authenticated by the final model's own token; a repeat after it finished changes nothing.
    """
    expected = store.final_model_token_hash(job_id)
    if not token or expected is None or not hmac.compare_digest(expected, hash_token(token)):
        raise Forbidden(f"this token does not belong to job {job_id}'s final model")
    unknown = sorted(set(files) - set(MODEL_FORMATS))
    if unknown or "keras" not in files:
        raise ValueError(
            f"send the model as 'keras' (and 'preprocessing', 'savedmodel'), not {sorted(files)}"
        )
    model = store.get_final_model(job_id)
    if model is not None and model.state.is_finished():
        return model
    folder = settings.data_dir.resolve() / "models" / f"job-{job_id}"
    staging = folder.with_name(f"{folder.name}.{secrets.token_hex(4)}.partial")
    staging.mkdir(parents=True)
    try:
        for name, stream in files.items():
            with (staging / MODEL_FORMATS[name]).open("wb") as out:
                shutil.copyfileobj(stream, out)
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
        stored = {name: str(folder / MODEL_FORMATS[name]) for name in files}
        return store.finish_final_model(job_id, TrialState.COMPLETED, test_metrics=metrics, files=stored)
    except FinalModelFinished as finished:
        return finished.model
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class NotReady(Exception):
    """The job has no final model (yet), or the prediction service cannot be reached."""


def _servable_model(store: Store, job: JobRecord) -> FinalModelRecord:
    model = store.get_final_model(job.id)
    if model is None or model.state is not TrialState.COMPLETED or "preprocessing" not in model.files:
        raise NotReady(f"job {job.id} has no final model yet; predictions start once it is trained")
    return model


def model_preprocessing(store: Store, job: JobRecord) -> dict[str, Any]:
    """The final model's ``preprocessing.json``: how raw inputs become its inputs (NotReady before)."""
    with open(_servable_model(store, job).files["preprocessing"], encoding="utf-8") as handle:
        loaded: dict[str, Any] = json.load(handle)
    return loaded


def predict(store: Store, settings: Settings, job: JobRecord, rows: list[Any]) -> dict[str, Any]:
    """Predictions of the job's final model for raw rows, from the prediction service."""
    model = _servable_model(store, job)
    if not rows:
        raise ValueError("send at least one row to predict")
    body = {"model": model.files["keras"], "preprocessing": model.files["preprocessing"], "rows": rows}
    try:
        # The first request may start a replica and load the model: allow for that.
        response = httpx.post(settings.serve.url, json=body, timeout=180)
    except httpx.TransportError as error:
        raise NotReady(
            f"the prediction service at {settings.serve.url} does not answer ({error}); it runs beside "
            "`l2l controller`"
        ) from None
    if response.status_code == 422:
        raise ValueError(response.json()["detail"])
    if response.status_code >= 400:
        raise NotReady(f"the prediction service failed: {response.status_code} {response.text[:300]}")
    result: dict[str, Any] = response.json()
    return result
