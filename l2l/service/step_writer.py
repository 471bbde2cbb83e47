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
import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future

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


class StepWriter:
    """Stores :class:`StepReport` batches on ``store`` from its own thread(s); thread-safe."""

    def __init__(self, store: Store, max_batch: int = MAX_BATCH) -> None:
        self.store = store
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, report: StepReport) -> Future[StepResult]:
        """Queue ``report``; the future holds its result once its batch committed (or the error)."""
        future: Future[StepResult] = Future()
        with self._lock:
            if self._closed:
                raise StorageError("the service is shutting down; send the report again")
            if not self._threads:
                self._start()
        self._queue.put((report, future))
        return future

    async def record(self, report: StepReport) -> StepResult:
        """Store ``report`` (awaitable from the event loop, which it never blocks)."""
        return await asyncio.wrap_future(self.submit(report))

    def close(self) -> None:
        """Finish what is queued, then stop the threads."""
        with self._lock:
            self._closed = True
            threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(_STOP)
        for thread in threads:
            thread.join()

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

    def _store(self, batch: Sequence[tuple[StepReport, Future[StepResult]]]) -> None:
        reports = [report for report, _ in batch]
        try:
            results = self.store.record_steps(reports)
        except StorageError as error:
            if len(batch) == 1:
                _settle(batch[0][1], error=error)
                return
            # One bad report must not fail the others: try each alone (a rare, slow path).
            log.warning("a batch of %d step reports failed (%s); storing them one by one", len(batch), error)
            for item in batch:
                self._store([item])
            return
        except Exception as error:  # a bug: answer every waiting request, keep the thread alive
            log.exception("storing a batch of %d step reports failed", len(batch))
            for _, future in batch:
                _settle(future, error=error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            _settle(future, result=result)


def _settle(
    future: Future[StepResult], result: StepResult | None = None, error: BaseException | None = None
) -> None:
    if future.set_running_or_notify_cancel():
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]
