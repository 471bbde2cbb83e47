"""How ``l2l serve`` keeps its controller running and stops everything it started.

* :class:`ControllerSupervisor` runs ``l2l controller`` as a child process and starts it
  again, after a bounded exponential backoff, whenever it exits while the service runs.
  The child gets SIGTERM if ``l2l serve`` dies (``PR_SET_PDEATHSIG``), so it is never
  left behind holding leases.
* ``l2l serve`` makes itself a child subreaper (Linux): processes the controller started
  (the embedded Ray cluster) that outlive it are re-parented to ``l2l serve`` instead of
  PID 1, so :func:`stop_descendants` finds and stops them, at a restart and at shutdown.

Process trees are read from ``/proc``; elsewhere these helpers do nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
#: A controller that ran this long before it exited was healthy: the backoff starts again.
HEALTHY_RUN_SECONDS = 60.0


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux); True if it worked."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def descendants(pid: int) -> list[int]:
    """Every living process below ``pid``, read from /proc (children first found, deepest last)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces or parentheses
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z":
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop_descendants(grace_seconds: float = 3.0, keep: Sequence[int] = ()) -> list[int]:
    """SIGTERM every descendant of this process (but ``keep``), SIGKILL those still there after
    ``grace_seconds``, and reap them; returns the pids it signalled."""
    targets = [pid for pid in descendants(os.getpid()) if pid not in keep]
    for pid in targets:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and any(_alive(pid) for pid in targets):
        _reap(targets)
        time.sleep(0.05)
    for pid in targets:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    _reap(targets)
    return targets


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _reap(pids: Sequence[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)  # only our own (adopted) children; others are not ours


class ControllerSupervisor:
    """Keeps one controller child process running until :meth:`stop`.

    ``first_delay`` and ``max_delay`` bound the wait before a restart (doubling after each
    quick exit); ``grace_seconds`` is how long :meth:`stop` lets the controller release its
    leases and stop Ray before it is killed.
    """

    def __init__(
        self,
        command: Sequence[str],
        env: dict[str, str],
        first_delay: float,
        max_delay: float,
        grace_seconds: float,
    ) -> None:
        self.command = list(command)
        self.env = env
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.grace_seconds = grace_seconds
        self.restarts = 0
        self._stop = threading.Event()
        self._child: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        # The thread that forks the child must outlive it: PR_SET_PDEATHSIG follows the thread.
        self._thread = threading.Thread(target=self._watch, name="controller-supervisor", daemon=True)

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.pid if child is not None else None

    def start(self) -> None:
        self._thread.start()

    def _watch(self) -> None:
        failures = 0
        while not self._stop.is_set():
            with self._lock:
                if self._stop.is_set():
                    break
                self._child = subprocess.Popen(self.command, env=self.env, preexec_fn=_die_with_parent)
            started = time.monotonic()
            code = self._child.wait()
            if self._stop.is_set():
                break
            ran = time.monotonic() - started
            failures = 0 if ran >= HEALTHY_RUN_SECONDS else failures + 1
            delay = min(self.max_delay, self.first_delay * 2 ** max(0, failures - 1))
            log.warning(
                "the controller exited (code %s) after %.0f s; restarting in %.1f s", code, ran, delay
            )
            stop_descendants(grace_seconds=2.0)  # what the dead controller left: its Ray processes
            self.restarts += 1
            self._stop.wait(delay)

    def stop(self) -> None:
        """Ask the controller to stop (SIGTERM), kill it after the grace period; wait for it."""
        with self._lock:
            self._stop.set()
            child = self._child
        if child is None:
            return
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=self.grace_seconds)
            except subprocess.TimeoutExpired:
                log.warning("the controller did not stop in %.0f s; killing it", self.grace_seconds)
                child.kill()
                child.wait()
        self._thread.join(timeout=5)
