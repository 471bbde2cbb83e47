"""The job loop: the one place that wires strategy, executor and store.

One pass (:meth:`JobLoop.step`) claims queued jobs, collects ended workers, tells
each strategy the results the workers reported, and asks for new proposals while a
job has budget and free concurrency. Every proposal is stored together with the
strategy state that made it, and every result is marked told together with the state
that learned it, so a controller that dies and restarts resumes exactly: no trial is
counted twice or lost.

Error policy (all of it lives here):

* the job cannot start (unknown space, strategy state that will not load, resources the
  cluster never has): the job fails with the reason;
* a trial whose model cannot be built fails at once;
* any other worker error is retried up to ``max_retries`` times, the traceback kept on
  the trial; after that the trial fails;
* ``max_consecutive_failures`` failed trials in a row stop the job with a clear reason.

A placement job (``kind: "placement"``) is one trial: the job runs a strategy that
proposes one empty task (:class:`OneTask`), so the trial goes through the same store
states, executor, tokens, retries and restarts as a search's; its worker runs the whole
placement search. The job completes with that trial, or fails with its error.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from controller import create_strategy
from controller.base import FINISHED, WAIT, Ask, Proposal, Result, Strategy
from l2l.service.jobs import job_kind, new_report_token
from l2l.service.jobspec import InvalidJob
from l2l.service.placement_jobs import resolve_graph_source
from l2l.settings import Settings
from l2l.store import (
    FinalModelFinished,
    JobNotRunning,
    LeaseLost,
    NotFound,
    StorageError,
    Store,
    TrialFinished,
)
from l2l.store.records import FinalModelRecord, JobRecord, TrialRecord
from l2l.store.states import JobState, TrialState
from l2l.worker.executor import Executor, Outcome, ResourceUnavailable, TrialTask
from l2l.worker.packing import packed_resources, predict_task_memory
from search_spaces import get_space

log = logging.getLogger(__name__)


#: States of trials whose results a strategy will learn (cancelled trials are never told).
UNTOLD_STATES = {TrialState.QUEUED, TrialState.RUNNING, TrialState.COMPLETED, TrialState.FAILED}


class JobCannotRun(Exception):
    """A fatal problem with the job itself; it fails with this message as its reason."""


class OneTask(Strategy):
    """The strategy of a job that is one task (a placement): one empty proposal, then FINISHED."""

    name = "one_task"

    def __init__(self) -> None:
        super().__init__(space=None)  # type: ignore[arg-type]  # nothing to validate

    def ask(self) -> Ask:
        if self.next_id:
            return FINISHED
        proposal = Proposal(self.next_id, {})
        self.pending[proposal.id] = {}
        self.next_id += 1
        return proposal

    def tell(self, proposal_id: int, result: Result) -> None:
        self._settle(proposal_id)


@dataclass
class _ActiveJob:
    record: JobRecord
    strategy: Strategy
    space: dict
    #: What a placement job's task does (TrialTask.placement), resolved when the job starts.
    placement: dict[str, Any] | None = None
    #: The strategy said FINISHED: no more proposals, however much budget is left.
    exhausted: bool = False
    consecutive_failures: int = 0
    last_error: str | None = None
    lease_renewed_at: float = field(default_factory=time.monotonic)

    @property
    def id(self) -> int:
        return self.record.id


class JobLoop:
    def __init__(
        self, store: Store, executor: Executor, settings: Settings, owner: str | None = None
    ) -> None:
        self.store = store
        self.executor = executor
        self.settings = settings
        self.owner = owner or f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
        self._jobs: dict[int, _ActiveJob] = {}
        self._trial_jobs: dict[int, int] = {}  # trial id -> job id, while its worker runs
        # Trials told while their worker still runs (it reported, and is returning): each
        # holds its slot until the worker ends, so the next trial finds that worker warm.
        self._told_running: set[int] = set()
        self._packed: set[int] = set()  # trials running on a share of a GPU
        self._alone: set[int] = set()  # trials that ran out of memory packed: whole GPUs from now on

    # ------------------------------------------------------------------ driving

    def run(self, stop: threading.Event) -> None:
        """Run passes until ``stop`` is set; after a pass that did nothing, wait for news."""
        log.info("controller %s started", self.owner)
        while not stop.is_set():
            # Read before the pass: whatever happens during it changes the marker, so the
            # wait below cannot sleep through news the pass read too early to see.
            marker = self.store.change_marker()
            if not self.step():
                self._wait_for_news(stop, marker)
        for job in list(self._jobs.values()):
            self.store.release_job(job.id, self.owner)
        log.info("controller %s stopped", self.owner)

    def _wait_for_news(self, stop: threading.Event, marker: tuple[Any, ...]) -> None:
        """Return when a worker ends, the database changes (a job submitted, paused or
        cancelled, a report stored), ``stop`` is set, or ``poll_seconds`` pass."""
        controller = self.settings.controller
        deadline = time.monotonic() + controller.poll_seconds
        wait = getattr(self.executor, "wait", None)
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            slice_seconds = min(controller.wake_seconds, left)
            if wait is not None:
                if wait(slice_seconds):
                    return
            elif stop.wait(slice_seconds):
                return
            if self.store.change_marker() != marker:
                return

    def step(self) -> bool:
        """One pass over every job this controller drives; True if anything happened."""
        busy = self._claim_jobs()
        for outcome in self.executor.poll():
            busy = True
            self._handle_outcome(outcome)
        for job in list(self._jobs.values()):
            try:
                busy |= self._advance(job)
            except LeaseLost as lost:
                log.warning("dropping job %s: %s", job.id, lost)
                self._forget(job)
            except JobNotRunning:
                busy = True  # paused or cancelled under our feet: the next pass sees it
            except JobCannotRun as error:
                self._finish(job, JobState.FAILED, str(error))
            except StorageError:
                raise  # the database, not the job, is in trouble: the caller decides
            except Exception as error:  # a bug in a strategy must not take other jobs down
                log.exception("job %s stopped by an internal error", job.id)
                self._finish(job, JobState.FAILED, f"internal error in the controller: {error!r}")
        return busy

    # ----------------------------------------------------------------- claiming

    def _claim_jobs(self) -> bool:
        claimed = False
        lease = self.settings.controller.lease_seconds
        while (record := self.store.claim_job(self.owner, lease)) is not None:
            claimed = True
            if record.id in self._jobs:
                continue  # our own lease ran out during a slow pass, and we took it back
            try:
                job = self._start(record)
            except JobCannotRun as error:
                self.store.finish_job(record.id, self.owner, JobState.FAILED, str(error))
                log.warning("job %s cannot run: %s", record.id, error)
                continue
            self._jobs[job.id] = job
            self._resume_unfinished_trials(job)
        return claimed

    def _start(self, record: JobRecord) -> _ActiveJob:
        spec = record.spec
        if job_kind(record) == "placement":
            return self._start_placement(record)
        try:
            space = get_space(record.space or spec["space"])
        except Exception as error:
            raise JobCannotRun(f"the search space cannot be loaded: {error}") from error
        if record.space is None:
            self.store.save_space(record.id, self.owner, space.to_dict())
        try:
            self.executor.check_resources(spec["budget"]["resources"])
        except ResourceUnavailable as error:
            raise JobCannotRun(str(error)) from error
        strategy_spec = spec["strategy"]
        try:
            strategy = create_strategy(
                strategy_spec["name"], space, spec.get("seed"), strategy_spec["options"]
            )
            if record.strategy_state is not None:
                strategy.set_state(record.strategy_state)
            elif spec.get("warm_start"):
                # read now, not at submission: a running earlier job has learned more since
                strategy.warm_start(self._warm_start_state(spec["warm_start"]["job_id"]))
        except JobCannotRun:
            raise
        except Exception as error:
            raise JobCannotRun(f"the strategy cannot start: {error}") from error
        log.info("job %s: %s", record.id, "resumed" if record.strategy_state else "started")
        return _ActiveJob(record, strategy, space.to_dict())

    def _start_placement(self, record: JobRecord) -> _ActiveJob:
        spec = record.spec
        try:
            self.executor.check_resources(spec["budget"]["resources"])
        except ResourceUnavailable as error:
            raise JobCannotRun(str(error)) from error
        try:
            source = resolve_graph_source(self.store, record)
        except (NotFound, InvalidJob) as error:  # what to place went away after submission
            raise JobCannotRun(f"what to place cannot be found: {error}") from error
        strategy = OneTask()
        if record.strategy_state is not None:
            strategy.set_state(record.strategy_state)
        placement = {
            **spec["placement"],
            "graph": source,
            "progress_seconds": self.settings.placement.progress_seconds,
        }
        log.info("job %s: placement %s", record.id, "resumed" if record.strategy_state else "started")
        return _ActiveJob(record, strategy, {}, placement=placement)

    def _warm_start_state(self, job_id: int) -> dict:
        try:
            state = self.store.get_job(job_id).strategy_state
        except NotFound:
            state = None
        if state is None:
            raise JobCannotRun(f"the job to warm-start from, {job_id}, has no saved strategy state")
        return state

    def _resume_unfinished_trials(self, job: _ActiveJob) -> None:
        # Trials a dead controller had stored or started: their workers died with it (or
        # will be ignored, since the new attempt gets a new token), so start them again.
        unfinished, _ = self.store.list_trials(job.id, states={TrialState.QUEUED, TrialState.RUNNING})
        for trial in unfinished:
            self._launch(job, trial)

    # ---------------------------------------------------------------- advancing

    def _advance(self, job: _ActiveJob) -> bool:
        state = self.store.get_job(job.id).state
        if state.is_finished():  # its team cancelled it; the store already ended its trials
            log.info("job %s was %s by its team", job.id, state.value)
            self._stop_workers(job)
            self._forget(job)
            return True
        busy = self._tell_results(job)
        if job.id not in self._jobs:  # the results stopped the job
            return True
        self._renew_lease(job)
        if state is JobState.PAUSED:
            return busy
        budget = job.record.budget
        counts = self.store.trial_counts(job.id)
        created = sum(counts.values())
        # A trial is in flight until the strategy has learned its result: one that finished
        # since the results were told above still holds its place, so no proposal is made
        # on results the strategy has not seen (and a run of failures stops the job on time).
        _, in_flight = self.store.list_trials(job.id, states=UNTOLD_STATES, told=False, limit=0)
        in_flight += sum(1 for trial_id in self._told_running if self._trial_jobs.get(trial_id) == job.id)
        while not job.exhausted and created < budget["trials"] and in_flight < budget["concurrency"]:
            asked = job.strategy.ask()
            if asked is WAIT:
                break
            if asked is FINISHED:
                job.exhausted = True
                break
            assert isinstance(asked, Proposal)
            trial = self.store.add_trial(job.id, self.owner, asked.id, asked.params, job.strategy.get_state())
            self._launch(job, trial)
            created += 1
            in_flight += 1
            busy = True
        if in_flight == 0 and (created >= budget["trials"] or job.exhausted):
            final = self._final_model(job)
            if final is not None and not final.state.is_finished():
                return busy  # the job ends when its final model does
            if final is not None and self._trial_jobs.get(final.trial_id) == job.id:
                return busy  # it uploaded, and its worker is returning: let it, to stay warm
            if job.placement is not None and counts[TrialState.COMPLETED] == 0:
                failed, _ = self.store.list_trials(job.id, states={TrialState.FAILED}, limit=1)
                error = failed[0].error if failed else job.last_error
                self._finish(job, JobState.FAILED, f"the placement failed: {_last_line(error)}")
                return True
            reasons = [] if created >= budget["trials"] else ["the strategy had nothing more to propose"]
            if final is not None and final.state is TrialState.FAILED:
                reasons.append(f"the final model failed: {_last_line(final.error)}")
            self._finish(job, JobState.COMPLETED, "; ".join(reasons) or None)
            return True
        return busy

    def _final_model(self, job: _ActiveJob) -> FinalModelRecord | None:
        """The job's final model, started (or restarted after a controller restart) if need be."""
        if not job.record.spec.get("final_model", True) or job.space.get("settings", {}).get("tabular"):
            return None
        final = self.store.get_final_model(job.id)
        if final is not None and (
            final.state.is_finished() or self._trial_jobs.get(final.trial_id) == job.id
        ):
            return final
        if final is None:
            best, _ = self.store.list_trials(
                job.id, states={TrialState.COMPLETED}, sort="reward", descending=True, limit=1
            )
            if not best:
                return None
            return self._launch_final(job, best[0].id, best[0].params)
        return self._launch_final(job, final.trial_id, final.params)

    def _launch_final(self, job: _ActiveJob, trial_id: int, params: dict) -> FinalModelRecord:
        token, token_hash = new_report_token()
        final = self.store.start_final_model(job.id, self.owner, trial_id, params, token_hash)
        self._submit(job, trial_id, final.attempts, token, params, final=True)
        log.info("job %s: training the final model of trial %s", job.id, trial_id)
        return final

    def _tell_results(self, job: _ActiveJob) -> bool:
        finished, _ = self.store.list_trials(
            job.id, states={TrialState.COMPLETED, TrialState.FAILED}, told=False
        )
        for trial in sorted(finished, key=lambda t: (t.finished_at or t.created_at, t.number)):
            job.strategy.tell(trial.proposal_id, Result(trial.reward, trial.metrics))
            self.store.mark_told(trial.id, self.owner, job.strategy.get_state())
            if trial.id in self._trial_jobs:
                self._told_running.add(trial.id)
            if trial.state is TrialState.COMPLETED:
                job.consecutive_failures = 0
                continue
            job.consecutive_failures += 1
            job.last_error = trial.error
            limit = self.settings.controller.max_consecutive_failures
            if job.consecutive_failures >= limit:
                last = _last_line(trial.error)
                self._finish(job, JobState.FAILED, f"{limit} trials failed in a row; the last one: {last}")
                return True
        return bool(finished)

    def _launch(self, job: _ActiveJob, trial: TrialRecord) -> None:
        token, token_hash = new_report_token()
        try:
            running = self.store.set_trial_state(trial.id, TrialState.RUNNING, token_hash=token_hash)
        except TrialFinished:
            return
        self._submit(job, trial.id, running.attempts, token, trial.params)

    def _submit(
        self, job: _ActiveJob, trial_id: int, attempt: int, token: str, params: dict, final: bool = False
    ) -> None:
        spec = job.record.spec
        task = TrialTask(
            trial_id=trial_id,
            job_id=job.id,
            attempt=attempt,
            token=token,
            report_url=self.settings.worker_report_url,
            dataset=spec.get("dataset", {}),
            space=job.space,
            params=params,
            epochs=spec["budget"]["epochs"],
            seed=spec.get("seed") or 0,
            final=final,
            kind=job_kind(job.record),
            placement=job.placement,
            hardware=spec.get("hardware"),
            backend=spec.get("backend") or self.settings.worker.backend,
        )
        self._trial_jobs[trial_id] = job.id
        self.executor.submit(task, self._resources(job, trial_id, params, final))

    def _resources(self, job: _ActiveJob, trial_id: int, params: dict, final: bool) -> dict[str, float]:
        """The trial's Ray resources: the budget's, or with ``budget.pack_gpus`` the share of a
        GPU its predicted memory needs (a final model, or a trial that ran out of memory
        packed, gets the whole GPU)."""
        budget = job.record.spec["budget"]
        resources: dict[str, float] = dict(budget["resources"])
        self._packed.discard(trial_id)
        if final or not budget.get("pack_gpus") or resources.get("GPU") != 1 or trial_id in self._alone:
            return resources
        try:
            needed = predict_task_memory(job.space, params, job.record.spec["dataset"]).total_bytes
        except Exception:  # no prediction: the whole GPU is always safe
            log.warning("trial %s: no memory prediction; it gets a whole GPU", trial_id, exc_info=True)
            return resources
        packed = packed_resources(resources, needed, int(self.settings.worker.gpu_memory_gb * 2**30))
        if packed["GPU"] < 1:
            self._packed.add(trial_id)
        return packed

    def _handle_outcome(self, outcome: Outcome) -> None:
        if outcome.worker:
            log.info(
                "trial %s attempt %s ran on node %s (worker pid %s, its trial %s)",
                outcome.trial_id, outcome.attempt, outcome.worker.get("node_id"),
                outcome.worker.get("pid"), outcome.worker.get("trials"),
            )  # fmt: skip
        job_id = self._trial_jobs.pop(outcome.trial_id, None)
        self._told_running.discard(outcome.trial_id)
        job = self._jobs.get(job_id) if job_id is not None else None
        if job is None:
            return  # a worker of a job this controller no longer drives
        if outcome.final:
            self._handle_final_outcome(job, outcome)
            return
        trial = self.store.get_trial(outcome.trial_id)
        if trial.state.is_finished():
            return  # the worker reported; the next pass tells the strategy
        if outcome.attempt is not None and outcome.attempt != trial.attempts:
            return  # an earlier attempt's worker; the current attempt decides
        error = outcome.error or "the worker ended without a final report"
        if outcome.out_of_memory and trial.id in self._packed:
            # Packing guessed wrong, not the trial: it runs again on a GPU of its own,
            # whatever its retries so far.
            log.warning("trial %s ran out of memory on a shared GPU; retrying it alone", trial.id)
            self._alone.add(trial.id)
            self.store.note_trial_error(trial.id, error)
            self._launch(job, trial)
            return
        if outcome.retryable and trial.attempts <= self.settings.controller.max_retries:
            log.warning(
                "%s trial %s attempt %s failed, retrying: %s", outcome.kind, trial.id, trial.attempts, error
            )
            self.store.note_trial_error(trial.id, error)
            self._launch(job, trial)
            return
        why = "cannot be built" if not outcome.retryable else f"failed {trial.attempts} times"
        with contextlib.suppress(TrialFinished):
            self.store.set_trial_state(trial.id, TrialState.FAILED, error=f"the trial {why}: {error}")

    def _handle_final_outcome(self, job: _ActiveJob, outcome: Outcome) -> None:
        self._trial_jobs.pop(outcome.trial_id, None)
        final = self.store.get_final_model(job.id)
        if final is None or final.state.is_finished() or outcome.attempt != final.attempts:
            return  # it reported, or this was an earlier attempt
        error = outcome.error or "the worker ended without uploading the model"
        if outcome.retryable and final.attempts <= self.settings.controller.max_retries:
            log.warning("job %s final model attempt %s failed, retrying: %s", job.id, final.attempts, error)
            self._launch_final(job, final.trial_id, final.params)
            return
        with contextlib.suppress(FinalModelFinished):
            self.store.finish_final_model(job.id, TrialState.FAILED, error=error)

    def _renew_lease(self, job: _ActiveJob) -> None:
        lease = self.settings.controller.lease_seconds
        if time.monotonic() - job.lease_renewed_at > lease / 3:
            self.store.renew_lease(job.id, self.owner, lease)
            job.lease_renewed_at = time.monotonic()

    def _finish(self, job: _ActiveJob, state: JobState, reason: str | None) -> None:
        for trial_id in self._stop_workers(job):
            with contextlib.suppress(TrialFinished):
                self.store.set_trial_state(trial_id, TrialState.CANCELLED, error="the job ended")
        try:
            self.store.finish_job(job.id, self.owner, state, reason)
            log.info("job %s %s%s", job.id, state.value, f": {reason}" if reason else "")
        except (LeaseLost, JobNotRunning):
            pass
        self._forget(job)

    def _stop_workers(self, job: _ActiveJob) -> list[int]:
        """Cancel the workers of the job's trials in flight; returns those trials' ids."""
        in_flight = [trial_id for trial_id, job_id in self._trial_jobs.items() if job_id == job.id]
        for trial_id in in_flight:
            if trial_id not in self._told_running:  # those reported, and their workers stay warm
                self.executor.cancel(trial_id)
        return in_flight

    def _forget(self, job: _ActiveJob) -> None:
        self._jobs.pop(job.id, None)
        for trial_id, job_id in list(self._trial_jobs.items()):
            if job_id == job.id:
                del self._trial_jobs[trial_id]
                self._told_running.discard(trial_id)


def _last_line(text: str | None) -> str:
    lines = (text or "no error text").strip().splitlines()
    return lines[-1] if lines else "no error text"
