"""A real ``l2l serve`` in a subprocess, for the supervision, shutdown and durability tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from l2l.client.supervisor import descendants

REPO = Path(__file__).resolve().parents[1]


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def wait_until(what: str, check: Callable[[], Any], seconds: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + seconds
    last: Any = None
    while True:
        try:
            last = check()
            if last:
                return last
        except (httpx.TransportError, ValueError, KeyError) as error:
            last = error
        assert time.monotonic() < deadline, f"timed out waiting for {what} (last: {last!r})"
        time.sleep(every)


class ServeProcess:
    """``python -m l2l.client.cli serve`` with its own data dir, port and database.

    It runs in a session of its own, so :meth:`kill_everything` takes out the API, the
    controller and the embedded Ray cluster at once, as a power cut would.
    """

    def __init__(self, tmp_path: Path, port: int, database_url: str | None = None, **env: str) -> None:
        self.tmp_path = tmp_path
        self.port = port
        self.env = dict(
            os.environ,
            PYTHONPATH=str(REPO),
            L2L_DATA_DIR=str(tmp_path),
            L2L_API__PORT=str(port),
            L2L_CONTROLLER__LEASE_SECONDS="3",
            L2L_CONTROLLER__HEARTBEAT_SECONDS="1",
            L2L_CONTROLLER__RESTART_FIRST_SECONDS="0.5",
            L2L_RAY__NUM_CPUS="2",
            L2L_SERVE__ENABLED="false",  # no prediction service: not what these tests are about
            **env,
        )
        self.env.pop("L2L_DATABASE_URL", None)
        if database_url:
            self.env["L2L_DATABASE_URL"] = database_url
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> ServeProcess:
        log = open(self.tmp_path / f"serve-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115 - lives with it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "l2l.client.cli", "serve"],
            env=self.env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def health(self) -> dict[str, Any] | None:
        answer = httpx.get(f"{self.url}/health", timeout=10)
        return answer.json() if answer.status_code == 200 else None

    def wait_healthy(self, seconds: float = 180) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            assert self.process is not None and self.process.poll() is None, "l2l serve exited"
            return self.health()

        health: dict[str, Any] = wait_until("l2l serve to be healthy", check, seconds)
        return health

    def tree(self) -> list[int]:
        """l2l serve and every process below it."""
        return [self.pid, *descendants(self.pid)]

    def kill_everything(self) -> None:
        """SIGKILL to every process of the service, no goodbye."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)
        wait_until("every process of the service to be gone", lambda: not _group_alive(self.pid), 30)

    def stop(self, seconds: float = 60) -> None:
        """SIGTERM, as an operator or an init system would; SIGKILL whatever is left after ``seconds``."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=seconds)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.getpgid(int(entry.name)) == pgid and alive(int(entry.name)):
                    return True
    return False
