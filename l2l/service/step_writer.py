"""Group commit for workers' intermediate reports.

A report is answered only after the transaction that stored it committed ("answered 200 means
stored"), but a commit (an fsync on SQLite, a round trip and a WAL flush on PostgreSQL) costs far
more than the insert. So one writer thread per process stores reports in batches: whatever
arrived while the previous batch was committing goes into the next transaction, together. An
idle service stores a lone report at once (a batch of one, no waiting); under load a batch holds
about as many reports as there are clients, and each commit is shared by all of them.

On SQLite one writer per process is also what the database wants (it has one write lock); on
PostgreSQL, :data:`WRITERS` threads overlap one batch's round trips with the next one's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from l2l.store import StorageError, Store
from l2l.store.step_reports import StepReport, StepResult

log = logging.getLogger(__name__)

#: The most reports one transaction takes (a bound on one statement's size and one batch's wait).
MAX_BATCH = 500

#: Writer threads per process, by database: SQLite has one write lock, so a second writer would
#: only wait for it.
WRITERS = {"sqlite": 1}
DEFAULT_WRITERS = 2

_STOP = object()


@dataclass
class _Pending:
    report: StepReport
    #: The event loop awaiting the answer (None: ``future`` is a thread's concurrent Future).
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[StepResult] | Future[StepResult]


class StepWriter:
    """Stores :class:`StepReport` batches on ``store`` from its own thread(s); thread-safe."""

    def __init__(self, store: Store, max_batch: int = MAX_BATCH) -> None:
        self.store = store
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    async def record(self, report: StepReport) -> StepResult:
        """Store ``report`` and return its result once its batch committed (never blocks the loop)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StepResult] = loop.create_future()
        self._put(_Pending(report, loop, future))
        return await future

    def submit(self, report: StepReport) -> Future[StepResult]:
        """From a thread: queue ``report``; the future holds its result once its batch committed."""
        future: Future[StepResult] = Future()
        self._put(_Pending(report, None, future))
        return future

    def close(self) -> None:
        """Finish what is queued, then stop the threads."""
        with self._lock:
            self._closed = True
            threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(_STOP)
        for thread in threads:
            thread.join()

    def _put(self, pending: _Pending) -> None:
        if not self._threads or self._closed:
            with self._lock:
                if self._closed:
                    raise StorageError("the service is shutting down; send the report again")
                if not self._threads:
                    self._start()
        self._queue.put(pending)

    def _start(self) -> None:
        count = WRITERS.get(self.store.dialect, DEFAULT_WRITERS)
        for number in range(count):
            thread = threading.Thread(target=self._run, name=f"l2l-step-writer-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._store(batch)  # type: ignore[arg-type]
            if stop:
                return

    def _store(self, batch: Sequence[_Pending]) -> None:
        try:
            results: Sequence[StepResult | BaseException] = self.store.record_steps(
                [pending.report for pending in batch]
            )
        except StorageError as error:
            if len(batch) > 1:
                # One bad report must not fail the others: try each alone (a rare, slow path).
                log.warning(
                    "a batch of %d step reports failed (%s); storing them one by one", len(batch), error
                )
                for pending in batch:
                    self._store([pending])
                return
            results = [error]
        except Exception as error:  # a bug: answer every waiting request, keep the thread alive
            log.exception("storing a batch of %d step reports failed", len(batch))
            results = [error] * len(batch)
        _deliver(batch, results)


def _deliver(batch: Sequence[_Pending], results: Sequence[StepResult | BaseException]) -> None:
    """Hand each result to its waiter: one wake-up per event loop per batch, not one per report."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, StepResult | BaseException]]] = {}
    for pending, result in zip(batch, results, strict=True):
        if pending.loop is None:
            _settle_thread_future(pending.future, result)  # type: ignore[arg-type]
        else:
            by_loop.setdefault(pending.loop, []).append((pending.future, result))
    for loop, answers in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop has closed: nobody is waiting any more
            loop.call_soon_threadsafe(_settle_loop_futures, answers)


def _settle_loop_futures(
    answers: list[tuple[asyncio.Future[StepResult], StepResult | BaseException]],
) -> None:
    for future, result in answers:
        if future.done():  # the request was cancelled (the client went away); it was stored anyway
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)


def _settle_thread_future(future: Future[StepResult], result: StepResult | BaseException) -> None:
    if future.set_running_or_notify_cancel():
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
