"""Scale-out, for real: a two-node Ray cluster, two API replicas on one PostgreSQL, and a
controller that is killed and replaced mid-job.

Everything runs as real processes on this machine: ``ray start --head`` and a second node
with its own temp dir and a custom ``TPU`` resource, two ``l2l serve --no-controller``
replicas on a fresh PostgreSQL database, and ``l2l controller`` joined to the cluster
through ``L2L_RAY__ADDRESS``. A job runs to its budget with trials on both nodes and
reports through both replicas (workers pick one per trial, and move on when one stops);
the controller is SIGKILLed mid-job and a second one takes the job over when its lease
runs out and finishes it exactly. A trial asking for the TPU lands on the node that has it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import POSTGRES, POSTGRES_ADMIN_URL, free_port

from l2l.store.scratch import scratch_postgres_database

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NODE_LINE = re.compile(r"trial (\d+) attempt (\d+) ran on node (\w+)")


@pytest.fixture
def postgres_database() -> Iterator[str]:
    if not POSTGRES:
        pytest.skip(f"no PostgreSQL server answers at {POSTGRES_ADMIN_URL}: the scale-out layout needs one")
    with scratch_postgres_database(POSTGRES_ADMIN_URL, "l2l_cluster") as fresh:
        yield fresh


class Processes:
    """Processes this test started, each in its own process group, all stopped at the end."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.env = env
        self.started: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: list[str], **env: str) -> subprocess.Popen[bytes]:
        log = (self.folder / f"{name}.log").open("wb")
        process = subprocess.Popen(
            args,
            cwd=REPO,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def kill(self, name: str, signum: int = signal.SIGKILL) -> None:
        process = self.started[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)  # the group: a Ray node's raylet and workers too
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)

    def stop_all(self) -> None:
        for name in reversed(list(self.started)):
            self.kill(name, signal.SIGTERM)
            self.kill(name, signal.SIGKILL)


def _wait(what: str, check: object, seconds: float) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            result = check()  # type: ignore[operator]
            if result:
                return result
        time.sleep(0.5)
    raise AssertionError(f"timed out after {seconds} s waiting until {what}")


def test_a_job_runs_on_a_real_cluster_and_survives_its_controller(
    postgres_database: str, tmp_path: Path
) -> None:
    folder = Path(tempfile.mkdtemp(prefix="l2l-cluster-", dir="/tmp"))  # Ray wants short socket paths
    ray_port, api_a, api_b = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RAY_AUTH_MODE": "disabled",  # one machine, loopback only
        "L2L_DATABASE_URL": postgres_database,
        "L2L_DATA_DIR": str(tmp_path),
        "L2L_SERVE__ENABLED": "false",
        "L2L_CONTROLLER__LEASE_SECONDS": "6",
        "L2L_API__ACCESS_LOG": "true",
        "L2L_WORKER__IDLE_SECONDS": "20",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    env.pop("L2L_RAY__ADDRESS", None)
    processes = Processes(folder, env)
    ray = str(BIN / "ray")
    l2l = [sys.executable, "-m", "l2l.client.cli"]
    try:
        processes.start(
            "head",
            [ray, "start", "--head", "--block", f"--port={ray_port}", "--num-cpus=1", "--num-gpus=0",
             "--include-dashboard=false", f"--temp-dir={folder / 'head'}"],
        )  # fmt: skip
        address = f"127.0.0.1:{ray_port}"
        _wait("the head node answers", lambda: "started" in processes.log("head").lower(), 180)
        processes.start(
            "node2",
            [ray, "start", "--block", f"--address={address}", "--num-cpus=1", "--num-gpus=0",
             '--resources={"TPU": 1}', f"--temp-dir={folder / 'node2'}"],
        )  # fmt: skip
        subprocess.run([*l2l, "migrate"], cwd=REPO, env=env, check=True, capture_output=True, timeout=120)
        for name, port in (("api_a", api_a), ("api_b", api_b)):
            processes.start(name, [*l2l, "serve", "--no-controller", "--port", str(port)])
        for port in (api_a, api_b):
            live = f"http://127.0.0.1:{port}/health/live"  # /health waits for a controller
            _wait(f"the API on {port}", lambda url=live: httpx.get(url).is_success, 120)
        key = subprocess.run(
            [*l2l, "admin", "create-team", "cluster"], cwd=REPO, env=env, check=True, capture_output=True,
            text=True, timeout=120,
        ).stdout.strip()  # fmt: skip
        controller_env = {
            "L2L_RAY__ADDRESS": address,
            "L2L_API__REPORT_URLS": json.dumps([f"http://127.0.0.1:{api_a}", f"http://127.0.0.1:{api_b}"]),
        }
        processes.start("controller1", [*l2l, "controller"], **controller_env)
        _wait("two nodes in the cluster", lambda: _nodes(ray, address, env) >= 2, 180)

        auth = {"Authorization": f"Bearer {key}"}
        job = {
            "dataset": "digits",
            "space": "mlp",
            "strategy": "random",
            "seed": 5,
            "final_model": False,
            "budget": {"trials": 8, "concurrency": 2, "epochs": 2},
        }
        response = httpx.post(f"http://127.0.0.1:{api_a}/jobs", json=job, headers=auth, timeout=60)
        assert response.status_code in (200, 201), response.text
        job_id = response.json()["id"]

        def completed() -> int:
            trials = httpx.get(
                f"http://127.0.0.1:{api_b}/jobs/{job_id}/trials", headers=auth, timeout=30
            ).json()
            return sum(1 for t in trials["items"] if t["state"] == "completed")

        _wait("three trials completed", lambda: completed() >= 3, 600)
        processes.kill("controller1")  # SIGKILL: no lease released, its workers die with it
        processes.start("controller2", [*l2l, "controller"], **controller_env)

        def finished() -> dict:
            state = httpx.get(f"http://127.0.0.1:{api_b}/jobs/{job_id}", headers=auth, timeout=30).json()
            return state if state["state"] in ("completed", "failed", "cancelled") else {}

        final = _wait("the second controller finishes the job", finished, 900)
        assert final["state"] == "completed", final  # type: ignore[index]
        trials = httpx.get(f"http://127.0.0.1:{api_b}/jobs/{job_id}/trials", headers=auth, timeout=30).json()
        assert trials["total"] == 8 and all(t["state"] == "completed" for t in trials["items"]), trials

        # The second controller took the job over (and drove trials), after the first died.
        second = processes.log("controller2")
        assert f"job {job_id}: resumed" in second, second[-3000:]
        ran = [NODE_LINE.search(line) for line in (processes.log("controller1") + second).splitlines()]
        nodes = {match.group(3) for match in ran if match}
        assert len(nodes) == 2, f"trials ran on {nodes}"
        for name in ("api_a", "api_b"):
            assert re.search(r"POST /trials/\d+/report", processes.log(name)), f"no report reached {name}"

        # A trial that asks for the TPU goes to the node that has one.
        tpu_job = {**job, "seed": 6, "budget": {"trials": 1, "concurrency": 1, "epochs": 1,
                                                "resources": {"CPU": 1, "TPU": 1}}}  # fmt: skip
        response = httpx.post(f"http://127.0.0.1:{api_a}/jobs", json=tpu_job, headers=auth, timeout=60)
        assert response.status_code in (200, 201), response.text
        tpu_job_id = response.json()["id"]

        def tpu_finished() -> dict:
            state = httpx.get(f"http://127.0.0.1:{api_a}/jobs/{tpu_job_id}", headers=auth, timeout=30).json()
            return state if state["state"] in ("completed", "failed", "cancelled") else {}

        assert _wait("the TPU job finishes", tpu_finished, 600)["state"] == "completed"  # type: ignore[index]
        tpu_node = _tpu_node_id(ray, address, env)
        tpu_trial = httpx.get(f"http://127.0.0.1:{api_a}/jobs/{tpu_job_id}/trials", headers=auth).json()[
            "items"
        ][0]
        lines = [NODE_LINE.search(line) for line in processes.log("controller2").splitlines()]
        assert any(m and int(m.group(1)) == tpu_trial["id"] and m.group(3) == tpu_node for m in lines)
    finally:
        processes.stop_all()
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def _nodes(ray: str, address: str, env: dict[str, str]) -> int:
    return len(_node_list(ray, address, env))


def _node_list(ray: str, address: str, env: dict[str, str]) -> list[dict]:
    """The cluster's live nodes, from a short-lived driver (no dashboard needed)."""
    script = (
        f"import json, ray; ray.init(address={address!r}, logging_level='ERROR'); "
        "print(json.dumps([n for n in ray.nodes() if n['Alive']])); ray.shutdown()"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _tpu_node_id(ray: str, address: str, env: dict[str, str]) -> str:
    nodes = [n for n in _node_list(ray, address, env) if n["Resources"].get("TPU")]
    assert len(nodes) == 1, nodes
    return str(nodes[0]["NodeID"])
