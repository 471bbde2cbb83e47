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
* ``max_consecutive_failures`` failed trials in a row stop the job with a clear reason;
* an attempt running past the trial time limit (``budget.trial_timeout_seconds``, default
  ``controller.trial_timeout_seconds``) is stopped and retried like a crash; with no retry
  left the trial ends ``timed_out``;
* anything else a job raises (a strategy, a builder, a spec the controller cannot load)
  fails that job with the reason; other jobs go on;
* a job whose loading stopped the controller process ``quarantine_after_crashes`` times is
  failed when next claimed (quarantined), so it cannot stop every controller that takes it;
* a lost lease (another controller, or the team cancelled) drops that job, nothing more;
* a database error ends the pass: :meth:`JobLoop.run` waits (a bounded exponential
  backoff), reconnects, reloads every job it drives from the database and goes on.

A placement job (``kind: "placement"``) is one trial: the job runs a strategy that
proposes one empty task (:class:`OneTask`), so the trial goes through the same store
states, executor, tokens, retries and restarts as a search's; its worker runs the whole
placement search. The job completes with that trial, or fails with its error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
from search_spaces import get_space

log = logging.getLogger(__name__)


#: Finished states whose results a strategy learns (cancelled trials are never told).
TOLD_STATES = {TrialState.COMPLETED, TrialState.FAILED, TrialState.TIMED_OUT}
#: States of trials whose results a strategy will learn.
UNTOLD_STATES = {TrialState.QUEUED, TrialState.RUNNING, *TOLD_STATES}
#: A controller silent this long is dead; its heartbeat row is dropped when another starts.
FORGET_DEAD_CONTROLLERS_AFTER = timedelta(days=1)
#: Extra seconds a placement trial gets beyond its own search time before it counts as hung.
PLACEMENT_GRACE_SECONDS = 300.0


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


@dataclass
class _Attempt:
    """A worker in flight: which attempt it runs and when it must have ended (monotonic)."""

    attempt: int
    deadline: float
    limit: float
    final: bool


class Backoff:
    """A bounded exponential delay: ``first``, doubling up to ``most``, until :meth:`reset`."""

    def __init__(self, first: float, most: float) -> None:
        self.first = first
        self.most = most
        self.failures = 0

    def next_delay(self) -> float:
        delay = min(self.most, self.first * 2**self.failures)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


class JobLoop:
    def __init__(
        self, store: Store, executor: Executor, settings: Settings, owner: str | None = None
    ) -> None:
        self.store = store
        self.executor = executor
        self.settings = settings
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._jobs: dict[int, _ActiveJob] = {}
        self._trial_jobs: dict[int, int] = {}  # running trial id -> job id
        self._attempts: dict[int, _Attempt] = {}  # running trial id -> its worker's attempt
        #: Outcomes a database error kept from being recorded; handled on the next pass.
        self._unhandled: list[Outcome] = []
        #: A database error left the in-memory strategies possibly ahead of the database.
        self._reload_needed = False
        self._next_beat = 0.0
        #: Passes that failed (the database, mostly) and were retried after a backoff.
        self.failed_passes = 0

    # ------------------------------------------------------------------ driving

    def run(self, stop: threading.Event) -> None:
        """Run passes until ``stop`` is set, sleeping a little whenever a pass did nothing.

        Never raises for a job's or the database's sake: a failed pass is logged, waited
        out with a bounded exponential backoff, and followed by a reload of every job.
        On return the leases it held are released and its heartbeat row removed.
        """
        log.info("controller %s started", self.owner)
        with contextlib.suppress(StorageError):  # rows of controllers that died long ago
            self.store.forget_controllers_older_than(datetime.now(UTC) - FORGET_DEAD_CONTROLLERS_AFTER)
        controller = self.settings.controller
        backoff = Backoff(controller.database_retry_first_seconds, controller.database_retry_max_seconds)
        try:
            while not stop.is_set():
                try:
                    self.beat()
                    busy = self.step()
                    backoff.reset()
                except Exception as error:  # noqa: BLE001  the loop must outlive any one failure
                    delay = backoff.next_delay()
                    self.failed_passes += 1
                    if isinstance(error, StorageError):
                        log.warning(
                            "the database failed (%s); retrying in %.1f s", _last_line(str(error)), delay
                        )
                    else:
                        log.exception("a pass of the job loop failed; retrying in %.1f s", delay)
                    self._reload_needed = True
                    with contextlib.suppress(Exception):
                        self.store.dispose()  # reconnect from scratch on the next pass
                    stop.wait(delay)
                    continue
                if not busy:
                    stop.wait(controller.poll_seconds)
        finally:
            self.close()
        log.info("controller %s stopped", self.owner)

    def close(self) -> None:
        """Release every job's lease (so another controller takes it at once) and the heartbeat row."""
        for job in list(self._jobs.values()):
            try:
                self.store.release_job(job.id, self.owner)
            except StorageError as error:  # its lease runs out instead
                log.warning("job %s not released: %s", job.id, _last_line(str(error)))
        with contextlib.suppress(StorageError):
            self.store.remove_controller(self.owner)

    def beat(self, force: bool = False) -> None:
        """Write this controller's heartbeat if ``heartbeat_seconds`` passed since the last one."""
        now = time.monotonic()
        if force or now >= self._next_beat:
            self.store.beat(self.owner, socket.gethostname(), os.getpid())
            self._next_beat = now + self.settings.controller.heartbeat_seconds

    def step(self) -> bool:
        """One pass over every job this controller drives; True if anything happened.

        Raises StorageError when the database failed; the next pass reloads every job.
        """
        if self._reload_needed:
            self._reload_jobs()
        busy = self._claim_jobs()
        outcomes, self._unhandled = [*self._unhandled, *self.executor.poll()], []
        for index, outcome in enumerate(outcomes):
            busy = True
            try:
                self._guarded(outcome.trial_id, self._handle_outcome, outcome)
            except StorageError:
                self._unhandled = outcomes[index:]
                raise
        busy |= self._stop_overdue_attempts()
        for job in list(self._jobs.values()):
            busy |= self._guarded_advance(job)
        return busy

    def _guarded_advance(self, job: _ActiveJob) -> bool:
        try:
            return self._advance(job)
        except (LeaseLost, JobNotRunning) as error:
            self._lost(job, error)
            return True
        except JobCannotRun as error:
            self._finish(job, JobState.FAILED, str(error))
        except StorageError:
            raise  # the database, not the job, is in trouble: run() backs off
        except (Exception, SystemExit) as error:  # a bug in a strategy must not take other jobs down
            log.exception("job %s stopped by an internal error", job.id)
            self._finish(job, JobState.FAILED, f"internal error in the controller: {error!r}")
        return True

    def _guarded(self, trial_id: int, handle: Any, *args: Any) -> None:
        """Handle something about a trial; its job alone pays for an error that is not the database's."""
        job = self._jobs.get(self._trial_jobs.get(trial_id, -1))
        try:
            handle(*args)
        except (LeaseLost, JobNotRunning) as error:
            if job is not None:
                self._lost(job, error)
        except StorageError:
            raise
        except (Exception, SystemExit) as error:
            log.exception("handling trial %s failed", trial_id)
            if job is not None:
                self._finish(job, JobState.FAILED, f"internal error in the controller: {error!r}")

    def _lost(self, job: _ActiveJob, error: StorageError) -> None:
        if isinstance(error, LeaseLost):
            log.warning("dropping job %s: %s", job.id, error)
            self._stop_workers(job)
            self._forget(job)
        # JobNotRunning: paused or cancelled under our feet; the next pass sees which

    def _reload_jobs(self) -> None:
        """Rebuild every job's strategy from the database after a failed pass.

        A pass that failed half-way may have asked a strategy for a proposal it could not
        store, or told it a result it could not mark told; the stored strategy state is
        the one that matches the stored trials. Workers in flight go on.
        """
        for job in list(self._jobs.values()):
            try:
                record = self.store.get_job(job.id)
            except NotFound:
                record = None
            if record is None or record.owner != self.owner or record.state.is_finished():
                self._stop_workers(job)
                self._forget(job)
                continue
            try:
                fresh = self._start(record)
            except StorageError:
                raise
            except JobCannotRun as error:
                self._finish(job, JobState.FAILED, str(error))
                continue
            except (Exception, SystemExit) as error:  # it loaded before; now it does not
                log.exception("job %s cannot be reloaded", job.id)
                reason = f"the job cannot be loaded: {type(error).__name__}: {error}"
                self._finish(job, JobState.FAILED, reason)
                continue
            self._jobs[job.id] = fresh
            self._resume_unfinished_trials(fresh, skip_in_flight=True)
        self._reload_needed = False

    # ----------------------------------------------------------------- claiming

    def _claim_jobs(self) -> bool:
        claimed = False
        lease = self.settings.controller.lease_seconds
        while (record := self.store.claim_job(self.owner, lease)) is not None:
            claimed = True
            if record.id in self._jobs:
                continue  # our own lease ran out during a slow pass, and we took it back
            self._take(record)
        return claimed

    def _take(self, record: JobRecord) -> None:
        """Start driving a claimed job, or fail it with the reason it cannot be driven."""
        crashes = record.unfinished_starts - 1  # claims whose controller died loading it
        limit = self.settings.controller.quarantine_after_crashes
        if crashes >= limit:
            self._fail_claimed(
                record,
                f"quarantined: the controller process stopped {crashes} times while loading this job; "
                "it will not be claimed again (submit a corrected job)",
            )
            return
        try:
            job = self._start(record)
            self._jobs[job.id] = job
            self._resume_unfinished_trials(job)
            self.store.job_started(job.id, self.owner)
        except (LeaseLost, JobNotRunning) as error:  # cancelled while it was being loaded
            log.warning("job %s dropped while starting: %s", record.id, error)
            self._drop(record.id)
        except StorageError:
            raise
        except JobCannotRun as error:
            self._fail_claimed(record, str(error))
        except (Exception, SystemExit) as error:  # whatever the job makes us load must not stop us
            log.exception("job %s cannot be loaded", record.id)
            self._fail_claimed(record, f"the job cannot be loaded: {type(error).__name__}: {error}")

    def _fail_claimed(self, record: JobRecord, reason: str) -> None:
        log.warning("job %s cannot run: %s", record.id, reason)
        job = self._jobs.get(record.id)
        if job is not None:
            self._finish(job, JobState.FAILED, reason)
            return
        with contextlib.suppress(LeaseLost, JobNotRunning):  # its team cancelled it meanwhile
            self.store.finish_job(record.id, self.owner, JobState.FAILED, reason)

    def _drop(self, job_id: int) -> None:
        job = self._jobs.get(job_id)
        if job is not None:
            self._stop_workers(job)
            self._forget(job)

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
        if record.chance is None and not space.settings.get("tabular"):
            self.store.save_chance(record.id, self.owner, _chance_of(spec["dataset"]))
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

    def _resume_unfinished_trials(self, job: _ActiveJob, skip_in_flight: bool = False) -> None:
        # Trials a dead controller had stored or started: their workers died with it (or
        # will be ignored, since the new attempt gets a new token), so start them again.
        # After a database error, trials whose workers this controller still runs go on.
        unfinished, _ = self.store.list_trials(job.id, states={TrialState.QUEUED, TrialState.RUNNING})
        for trial in unfinished:
            if skip_in_flight and trial.state is TrialState.RUNNING and trial.id in self._attempts:
                continue
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
            if job.placement is not None and counts[TrialState.COMPLETED] == 0:
                failed, _ = self.store.list_trials(job.id, states={TrialState.FAILED}, limit=1)
                error = failed[0].error if failed else job.last_error
                self._finish(job, JobState.FAILED, f"the placement failed: {_last_line(error)}")
                return True
            if counts[TrialState.COMPLETED] == 0:  # nothing to show for it: a failure, never "completed"
                self._finish(job, JobState.FAILED, self._why_no_trial_succeeded(job))
                return True
            reasons = [] if created >= budget["trials"] else ["the strategy had nothing more to propose"]
            if final is not None and final.state in (TrialState.FAILED, TrialState.TIMED_OUT):
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
        finished, _ = self.store.list_trials(job.id, states=TOLD_STATES, told=False)
        for trial in sorted(finished, key=lambda t: (t.finished_at or t.created_at, t.number)):
            job.strategy.tell(trial.proposal_id, Result(trial.reward, trial.metrics))
            self.store.mark_told(trial.id, self.owner, job.strategy.get_state())
            self._trial_jobs.pop(trial.id, None)
            self._attempts.pop(trial.id, None)
            if trial.state is TrialState.COMPLETED:
                job.consecutive_failures = 0
                continue
            job.consecutive_failures += 1
            job.last_error = trial.error
            limit = self.settings.controller.max_consecutive_failures
            if job.consecutive_failures >= limit:
                reason = f"the last one: {_last_line(trial.error)}"
                if self.store.trial_counts(job.id)[TrialState.COMPLETED] == 0:
                    failed, _ = self.store.list_trials(job.id, states={TrialState.FAILED})
                    reason = _missing_objective_metric(job.record.spec, failed) or reason
                self._finish(job, JobState.FAILED, f"{limit} trials failed in a row; {reason}")
                return True
        return bool(finished)

    def _why_no_trial_succeeded(self, job: _ActiveJob) -> str:
        """The reason of a job none of whose trials completed, in the words of what went wrong."""
        failed, total = self.store.list_trials(job.id, states={TrialState.FAILED})
        missing = _missing_objective_metric(job.record.spec, failed)
        if missing is not None:
            return missing
        last = max(failed, key=lambda t: (t.finished_at or t.created_at, t.number), default=None)
        error = last.error if last is not None else job.last_error
        return f"no trial succeeded ({total} failed); the last error: {_last_line(error)}"

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
            report_url=self.settings.report_url,
            dataset=spec.get("dataset", {}),
            space=job.space,
            params=params,
            epochs=spec["budget"]["epochs"],
            seed=spec.get("seed") or 0,
            final=final,
            kind=job_kind(job.record),
            placement=job.placement,
            hardware=spec.get("hardware"),
        )
        self._trial_jobs[trial_id] = job.id
        limit = self._time_limit(job)
        self._attempts[trial_id] = _Attempt(attempt, time.monotonic() + limit, limit, final)
        self.executor.submit(task, spec["budget"]["resources"])

    def _time_limit(self, job: _ActiveJob) -> float:
        """Seconds one attempt of the job's trials may run: the job's own limit or the default."""
        default = self.settings.controller.trial_timeout_seconds
        limit = job.record.budget.get("trial_timeout_seconds") or default
        if job.placement is not None:  # a placement searches for max_seconds by design
            limit = max(limit, float(job.placement.get("max_seconds") or 0) + PLACEMENT_GRACE_SECONDS)
        return float(limit)

    def _stop_overdue_attempts(self) -> bool:
        """Stop workers past their time limit; the trial is retried or ends ``timed_out``."""
        now = time.monotonic()
        overdue = [(trial_id, a) for trial_id, a in self._attempts.items() if a.deadline <= now]
        for trial_id, attempt in overdue:
            del self._attempts[trial_id]
            if trial_id not in self._trial_jobs:
                continue
            self.executor.cancel(trial_id)
            why = f"attempt {attempt.attempt} ran past the trial time limit of {attempt.limit:g} s"
            log.warning("trial %s: %s; stopped", trial_id, why)
            outcome = Outcome(trial_id, why, True, attempt.attempt, attempt.final, timed_out=True)
            try:
                self._guarded(trial_id, self._handle_outcome, outcome)
            except StorageError:
                self._unhandled.append(outcome)  # recorded on the next pass
                raise
        return bool(overdue)

    def _handle_outcome(self, outcome: Outcome) -> None:
        job_id = self._trial_jobs.get(outcome.trial_id)
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
        if outcome.attempt == trial.attempts:
            self._attempts.pop(trial.id, None)
        error = outcome.error or "the worker ended without a final report"
        if outcome.retryable and trial.attempts <= self.settings.controller.max_retries:
            log.warning(
                "%s trial %s attempt %s failed, retrying: %s", outcome.kind, trial.id, trial.attempts, error
            )
            self.store.note_trial_error(trial.id, error)
            self._launch(job, trial)
            return
        if outcome.timed_out:
            state, why = TrialState.TIMED_OUT, f"timed out ({trial.attempts} attempts)"
        else:
            state = TrialState.FAILED
            why = "cannot be built" if not outcome.retryable else f"failed {trial.attempts} times"
        with contextlib.suppress(TrialFinished):
            self.store.set_trial_state(trial.id, state, error=f"the trial {why}: {error}")

    def _handle_final_outcome(self, job: _ActiveJob, outcome: Outcome) -> None:
        final = self.store.get_final_model(job.id)
        if outcome.attempt is not None and final is not None and outcome.attempt != final.attempts:
            return  # an earlier attempt's worker; the current one decides
        self._trial_jobs.pop(outcome.trial_id, None)
        self._attempts.pop(outcome.trial_id, None)
        if final is None or final.state.is_finished():
            return  # it reported
        error = outcome.error or "the worker ended without uploading the model"
        if outcome.retryable and final.attempts <= self.settings.controller.max_retries:
            log.warning("job %s final model attempt %s failed, retrying: %s", job.id, final.attempts, error)
            self._launch_final(job, final.trial_id, final.params)
            return
        state = TrialState.TIMED_OUT if outcome.timed_out else TrialState.FAILED
        with contextlib.suppress(FinalModelFinished):
            self.store.finish_final_model(job.id, state, error=error)

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
            self.executor.cancel(trial_id)
        return in_flight

    def _forget(self, job: _ActiveJob) -> None:
        self._jobs.pop(job.id, None)
        for trial_id, job_id in list(self._trial_jobs.items()):
            if job_id == job.id:
                del self._trial_jobs[trial_id]
                self._attempts.pop(trial_id, None)


def _missing_objective_metric(spec: dict[str, Any], failed: list[TrialRecord]) -> str | None:
    """Why trials failed when none reported the objective's metric (a typo: val_acc), else None."""
    metric = spec.get("objective", {}).get("metric")
    reported = sorted({name for trial in failed for name in trial.metrics})
    if not (failed and reported and metric) or any(metric in trial.metrics for trial in failed):
        return None
    return f"no trial reported the objective metric {metric!r}; metrics reported: {', '.join(reported)}"


def _chance_of(dataset: dict[str, Any]) -> dict[str, Any]:
    from l2l.service.chance import chance_level
    from l2l.service.datasets import DatasetError, load_dataset

    try:
        # The split the trials see: the dataset's own split seed (see l2l.worker.trainer).
        return chance_level(load_dataset(dataset, seed=dataset.get("split_seed", 0)))
    except (DatasetError, OSError, ValueError) as error:
        raise JobCannotRun(f"the dataset cannot be loaded: {error}") from error


def _last_line(text: str | None) -> str:
    lines = (text or "no error text").strip().splitlines()
    return lines[-1] if lines else "no error text"
