"""Device placement as a service: graph uploads, placement jobs through the real API, the job
loop with the fake executor (which runs the real placement worker) and the result document;
hardware-aware search's step-time cost."""

from __future__ import annotations

import copy
import json
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import HANG_SECONDS, LiveServer, free_port, make_settings
from fakes import ThreadExecutor
from fastapi.testclient import TestClient

from api.main import create_app
from l2l.client import Client
from l2l.loop import JobLoop
from l2l.placement.baselines import BASELINES, expert
from l2l.placement.cluster import PRESETS, get_cluster
from l2l.placement.graph import OpGraph
from l2l.placement.simulator import Simulator
from l2l.rewards import reward_from_metrics
from l2l.service.jobs import create_team, submit_job
from l2l.service.jobspec import PLACERS, JobSpec
from l2l.settings import Settings
from l2l.store import Store
from l2l.store.states import JobState, TrialState
from l2l.worker.executor import TrialBuildError, TrialTask
from l2l.worker.placement_trial import build_graph, hardware_step_time

#: Two towers of two ops each between an input and a head: worth splitting over two GPUs.
TINY = {
    "name": "two-towers",
    "ops": [
        {"name": "input", "flops": 0, "output_bytes": 4_000_000},
        {"name": "a1", "flops": 4e10, "output_bytes": 8_000_000, "inputs": ["input"], "layer": "tower_a"},
        {"name": "a2", "flops": 4e10, "output_bytes": 8_000_000, "inputs": ["a1"], "layer": "tower_a"},
        {"name": "b1", "flops": 4e10, "output_bytes": 8_000_000, "inputs": ["input"], "layer": "tower_b"},
        {"name": "b2", "flops": 4e10, "output_bytes": 8_000_000, "inputs": ["b1"], "layer": "tower_b"},
        {"name": "join", "flops": 1e9, "output_bytes": 1_000_000, "inputs": ["a2", "b2"]},
        {"name": "head", "flops": 2e10, "output_bytes": 40_000, "inputs": ["join"], "param_bytes": 4_000_000},
    ],
}
TWO_GPUS = {
    "name": "two-gpus",
    "devices": [
        {"name": f"gpu:{i}", "kind": "v100", "flops": 8e12, "memory_bytes": 16 * 2**30} for i in range(2)
    ],
    "bandwidth": 2e10,
    "latency": 1e-5,
}
SEARCH_JOB = {
    "dataset": "wine",
    "space": "mlp",
    "strategy": "random",
    "budget": {"trials": 2, "concurrency": 2, "epochs": 1},
    "seed": 1,
}


def placement_job(source: dict[str, Any], **changes: Any) -> dict[str, Any]:
    section = {"graph": source, "cluster": "4gpu-pcie", "strategy": "random", "max_seconds": 1.5}
    return {"kind": "placement", "placement": {**section, **changes}, "seed": 3}


def _settings(tmp_path: Path, port: int = 8000) -> Settings:
    settings = make_settings(tmp_path, port=port, max_retries=1)
    placement = settings.placement.model_copy(update={"progress_seconds": 0.3, "max_graph_ops": 50})
    return settings.model_copy(update={"placement": placement})


@pytest.fixture
def client(store: Store, tmp_path: Path) -> Iterator[TestClient]:
    """The real app, signed in as team "alpha"."""
    _, key = create_team(store, "alpha")
    with TestClient(create_app(_settings(tmp_path), store), headers={"Authorization": f"Bearer {key}"}) as c:
        yield c


@pytest.fixture
def live(store: Store, tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(store, _settings(tmp_path, port=free_port())) as server:
        yield server


def _run_until_done(loop: JobLoop, job_id: int, seconds: float = HANG_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not loop.store.get_job(job_id).state.is_finished():
        assert time.monotonic() < deadline, f"job {job_id} did not finish in {seconds} s"
        if not loop.step():
            time.sleep(0.02)


def _detail(response: httpx.Response) -> str:
    return json.dumps(response.json()["detail"])


# ------------------------------------------------------------------ graph uploads


def test_a_graph_is_uploaded_as_json_or_as_a_file_and_listed(client: TestClient) -> None:
    created = client.post("/graphs", json=TINY)
    assert created.status_code == 201, created.text
    graph = created.json()
    assert graph["name"] == "two-towers"
    assert graph["summary"]["ops"] == 7 and graph["summary"]["layers"] == 5
    assert graph["summary"]["flops"] == pytest.approx(1.81e11)
    as_file = client.post(
        "/graphs", files={"file": ("g.json", json.dumps(TINY).encode())}, data={"name": "my towers"}
    )
    assert as_file.status_code == 201, as_file.text and as_file.json()["name"] == "my towers"
    listed = client.get("/graphs").json()["items"]
    assert [g["id"] for g in listed] == [as_file.json()["id"], graph["id"]]
    assert client.get(f"/graphs/{graph['id']}").json()["summary"] == graph["summary"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda g: g["ops"][1].update(inputs=["a2"]), ["cycle", "a1", "a2"]),
        (lambda g: g["ops"][5].update(inputs=["a2", "nowhere"]), ["join", "nowhere", "not an op"]),
        (lambda g: g["ops"][2].update(name="a1"), ["a1", "twice"]),
        (lambda g: g["ops"][3].update(flops=-1), ["b1", ">= 0"]),
        (lambda g: g.update(ops=[]), ["non-empty"]),
    ],
)
def test_an_invalid_graph_is_a_422_naming_the_op_and_leaves_nothing(
    client: TestClient, tmp_path: Path, change: Any, expected: list[str]
) -> None:
    graph = copy.deepcopy(TINY)
    change(graph)
    response = client.post("/graphs", json=graph)
    assert response.status_code == 422, response.text
    assert all(word in response.json()["detail"] for word in expected), response.json()["detail"]
    assert client.get("/graphs").json()["items"] == []
    assert not list((tmp_path / "graphs").glob("*")) if (tmp_path / "graphs").exists() else True


def test_not_json_an_empty_file_and_too_many_ops_are_refused(client: TestClient) -> None:
    bad = client.post("/graphs", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 422 and "not valid JSON" in bad.json()["detail"]
    empty = client.post("/graphs", files={"file": ("g.json", b"")})
    assert empty.status_code == 422 and "empty" in empty.json()["detail"]
    chain = {"name": "long", "ops": [{"name": f"op{i}", "flops": 1, "output_bytes": 1} for i in range(60)]}
    large = client.post("/graphs", json=chain)
    assert large.status_code == 413 and "at most 50" in large.json()["detail"]
    assert client.get("/graphs").json()["items"] == []


def test_another_teams_graph_is_a_404_and_cannot_be_placed(client: TestClient, store: Store) -> None:
    graph_id = client.post("/graphs", json=TINY).json()["id"]
    _, beta_key = create_team(store, "beta")
    beta = {"Authorization": f"Bearer {beta_key}"}
    assert client.get(f"/graphs/{graph_id}", headers=beta).status_code == 404
    assert client.get("/graphs", headers=beta).json()["items"] == []
    refused = client.post("/jobs", json=placement_job({"graph_id": graph_id}), headers=beta)
    assert refused.status_code == 422 and f"no uploaded graph {graph_id}" in refused.json()["detail"]
    assert client.get("/jobs", headers=beta).json()["total"] == 0
    assert client.get("/graphs/999").status_code == 404


# ------------------------------------------------------------------ submitting


def test_a_placement_job_is_normalised(client: TestClient) -> None:
    graph_id = client.post("/graphs", json=TINY).json()["id"]
    created = client.post("/jobs", json=placement_job({"graph_id": graph_id}))
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["kind"] == "placement" and job["name"] == f"place graph {graph_id} on 4gpu-pcie (random)"
    assert job["spec"]["placement"] == {
        "graph": {"graph_id": graph_id},
        "cluster": "4gpu-pcie",
        "strategy": {"name": "random", "options": {}},
        "max_seconds": 1.5,
        "batch_size": None,
    }
    assert job["spec"]["objective"] == {"metric": "step_time", "mode": "min", "power": 0.5}
    assert job["progress"]["trials"] == 1
    defaults = client.post("/jobs", json={"kind": "placement", "placement": {"graph": {"benchmark": "nmt"}}})
    assert defaults.status_code == 201, defaults.text
    assert defaults.json()["spec"]["placement"]["max_seconds"] == 120  # the settings' default
    assert defaults.json()["spec"]["placement"]["strategy"]["name"] == "hierarchical"
    assert client.get(f"/jobs/{job['id']}/placement").status_code == 404  # nothing until it ran
    custom = client.post("/jobs", json=placement_job({"benchmark": "rnnlm"}, cluster=TWO_GPUS, batch_size=8))
    assert custom.status_code == 201, custom.text
    links = custom.json()["spec"]["placement"]["cluster"]["links"]  # a private link each way
    assert [(k["bandwidth"], k["latency"]) for k in links] == [(2e10, 1e-5), (2e10, 1e-5)]
    assert custom.json()["name"] == "place rnnlm on two-gpus (random)"
    assert custom.json()["spec"]["placement"]["graph"] == {"benchmark": "rnnlm", "options": {"batch_size": 8}}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"cluster": "16gpu-magic"}, ["unknown cluster", *sorted(PRESETS)]),
        ({"cluster": {"devices": [{"name": "gpu:0"}]}}, ["cluster", "4gpu-pcie"]),
        ({"cluster": {**TWO_GPUS, "bandwidth": math.inf}}, ["finite"]),
        ({"strategy": "genius"}, ["placement.strategy", "hierarchical", "random"]),
        ({"max_seconds": 10_000}, ["at most 3600"]),
        ({"graph": {"benchmark": "alexnet"}}, ["unknown benchmark", "nmt", "resnet50"]),
        ({"graph": {"graph_id": 1, "job_id": 2}}, ["exactly one", "job_id and graph_id"]),
        ({"graph": {"job_id": 2, "options": {"layers": 2}}}, ["benchmark's overrides"]),
        ({"graph": {"job_id": 77}}, ["no job 77"]),
        ({"resources": {"GPU": 16}}, ["accelerators"]),
        ({"graph": {"graph_id": 1}, "batch_size": 8}, ["built into"]),
        ({"graph": {"benchmark": "nmt", "options": {"batch_size": 4}}, "batch_size": 8}, ["differ"]),
    ],
)
def test_a_placement_job_that_cannot_run_is_a_422(
    client: TestClient, changes: dict[str, Any], expected: list[str]
) -> None:
    body = json.dumps(placement_job({"benchmark": "nmt"}, **changes))  # Infinity too, as Python writes it
    response = client.post("/jobs", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert all(word in _detail(response) for word in expected), _detail(response)
    assert client.get("/jobs").json()["total"] == 0


def test_search_fields_in_a_placement_job_and_the_reverse_are_refused(client: TestClient) -> None:
    mixed = client.post("/jobs", json={**placement_job({"benchmark": "nmt"}), "dataset": "wine"})
    assert mixed.status_code == 422 and "a placement job has no dataset" in _detail(mixed)
    no_section = client.post("/jobs", json={"kind": "placement"})
    assert no_section.status_code == 422 and '\\"placement\\" section' in _detail(no_section)
    stray = client.post("/jobs", json={**SEARCH_JOB, "placement": {"graph": {"benchmark": "nmt"}}})
    assert stray.status_code == 422 and 'kind: \\"placement\\"' in _detail(stray)


def test_placing_an_unfinished_or_placement_job_is_refused(client: TestClient) -> None:
    search = client.post("/jobs", json=SEARCH_JOB).json()
    running = client.post("/jobs", json=placement_job({"job_id": search["id"]}))
    assert running.status_code == 422 and "once it has finished" in running.json()["detail"]


def test_a_step_time_cost_needs_a_hardware_section(client: TestClient) -> None:
    objective = {"metric": "val_accuracy", "cost": "step_time", "target": 0.001, "weight": -0.07}
    missing = client.post("/jobs", json={**SEARCH_JOB, "objective": objective})
    assert missing.status_code == 422 and '\\"hardware\\"' in _detail(missing)
    unknown = client.post(
        "/jobs", json={**SEARCH_JOB, "objective": objective, "hardware": {"cluster": "moon-base"}}
    )
    assert unknown.status_code == 422 and "4gpu-nvlink" in _detail(unknown)
    placer = client.post(
        "/jobs", json={**SEARCH_JOB, "hardware": {"cluster": "4gpu-pcie", "placer": "oracle"}}
    )
    assert placer.status_code == 422
    hardware = {"cluster": "4gpu-nvlink", "placer": "expert"}
    created = client.post("/jobs", json={**SEARCH_JOB, "objective": objective, "hardware": hardware})
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["hardware"] == hardware
    assert created.json()["spec"]["objective"]["cost"] == "step_time"


def test_the_placers_are_the_baselines() -> None:
    assert set(PLACERS) == {"best_baseline", *BASELINES}


# ------------------------------------------------------------------ running


def _upload(live: LiveServer, key: str, graph: dict[str, Any]) -> int:
    return int(Client(live.url, key).upload_graph(graph)["id"])


def test_a_placement_job_runs_and_its_placement_reproduces_its_step_time(
    store: Store, live: LiveServer
) -> None:
    team, key = create_team(store, "placers")
    auth = {"Authorization": f"Bearer {key}"}
    graph_id = _upload(live, key, TINY)
    job_id = httpx.post(f"{live.url}/jobs", json=placement_job({"graph_id": graph_id}), headers=auth).json()[
        "id"
    ]
    executor = ThreadExecutor()
    _run_until_done(JobLoop(store, executor, live.settings), job_id)

    job = store.get_job(job_id)
    trials, total = store.list_trials(job_id)
    assert job.state is JobState.COMPLETED and job.reason is None, job.reason
    assert total == 1 and len(executor.submitted) == 1 and executor.submitted[0].kind == "placement"
    trial = trials[0]
    assert trial.state is TrialState.COMPLETED and job.best_trial_id == trial.id
    metrics = trial.metrics
    assert trial.reward == pytest.approx(-math.sqrt(metrics["step_time"]))
    assert metrics["step_time_ms"] == pytest.approx(metrics["step_time"] * 1e3, rel=1e-6)
    for name in ("single_device_ms", "round_robin_ms", "expert_ms", "metis_ms", "lower_bound_ms", "samples"):
        assert metrics[name] > 0, name
    assert metrics["lower_bound_ms"] <= metrics["step_time_ms"] + 1e-6
    assert metrics["speedup_vs_expert"] == pytest.approx(
        metrics["expert_ms"] / metrics["step_time_ms"], rel=1e-5
    )
    progress = store.trial_metrics(trial.id)  # the best step time so far, every few tenths of a second
    assert progress and all(p.values["best_step_time_ms"] >= metrics["step_time_ms"] - 1e-6 for p in progress)

    response = httpx.get(f"{live.url}/jobs/{job_id}/placement", headers=auth)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    document = Client(live.url, key).placement(job_id)
    assert document == response.json()
    cluster = get_cluster("4gpu-pcie")
    assert document["devices"] == cluster.device_names
    assert [op["name"] for op in document["graph"]["ops"]] == [op["name"] for op in TINY["ops"]]
    assert (
        document["graph"]["ops"][5]["inputs"] == [2, 4] and document["graph"]["ops"][1]["layer"] == "tower_a"
    )
    placement = [cluster.device_names.index(name) for name in document["placement"]]
    simulator = Simulator(OpGraph.from_dict(TINY), cluster)
    assert simulator.step_time(placement) == pytest.approx(document["step_time"])
    assert document["step_time"] == pytest.approx(metrics["step_time"])
    expert_placement = [cluster.device_names.index(n) for n in document["baselines"]["expert"]["placement"]]
    assert simulator.step_time(expert_placement) * 1e3 == pytest.approx(
        document["baselines"]["expert"]["step_time_ms"]
    )
    learned = document["timelines"]["learned"]
    assert learned["step_time_ms"] == pytest.approx(metrics["step_time_ms"])
    runs = [run for device in learned["devices"] for run in device["runs"]]
    # each op's forward and backward, and the optimizer update of the one layer with weights
    assert len(runs) == 2 * len(TINY["ops"]) + 1
    assert max(run[3] for run in runs) == pytest.approx(learned["step_time_ms"], rel=1e-5)
    for d, device in enumerate(learned["devices"]):  # each run sits on the device the placement says
        assert all(placement[run[0]] == d for run in device["runs"])
    assert "expert" in document["timelines"]

    # Team-scoped like everything else; a search job has no placement.
    _, other_key = create_team(store, "others")
    hidden = httpx.get(
        f"{live.url}/jobs/{job_id}/placement", headers={"Authorization": f"Bearer {other_key}"}
    )
    assert hidden.status_code == 404
    search = submit_job(store, JobSpec.model_validate(SEARCH_JOB), live.settings, team)
    assert httpx.get(f"{live.url}/jobs/{search.id}/placement", headers=auth).status_code == 404
    # The worker's token is spent: a late document changes nothing, another token is refused.
    late = httpx.post(f"{live.url}/trials/{trial.id}/placement", json=document, headers=auth)
    assert late.status_code == 403


# SQLite only: what this adds to the job tests above (on both databases) is the Keras file and the
# code of the result, which a database does not change; each run costs twenty seconds of CPU.
@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_an_uploaded_keras_model_is_placed_by_layer_and_the_result_applies_to_it(
    store: Store, live: LiveServer, tmp_path: Path
) -> None:
    from test_placement_apply import LAYERS, _child, save_towers

    model_file = save_towers(tmp_path / "towers.keras")
    _, key = create_team(store, "keras-users")
    auth = {"Authorization": f"Bearer {key}"}
    with model_file.open("rb") as handle:
        uploaded = httpx.post(
            f"{live.url}/graphs",
            files={"file": ("towers.keras", handle.read())},
            data={"batch_size": "16"},
            headers=auth,
            timeout=300,
        )
    assert uploaded.status_code == 201, uploaded.text
    summary = uploaded.json()["summary"]
    assert (
        summary["source"] == "keras" and summary["batch_size"] == 16 and summary["layers"] == len(LAYERS) + 1
    )
    job = placement_job({"graph_id": uploaded.json()["id"]}, strategy="hierarchical", max_seconds=3)
    job["placement"]["strategy"] = {
        "name": "hierarchical",
        "options": {"groups": 4, "hidden_size": 8, "xla": False},
    }
    job_id = httpx.post(f"{live.url}/jobs", json=job, headers=auth).json()["id"]
    _run_until_done(JobLoop(store, ThreadExecutor(), live.settings), job_id, seconds=300)
    assert store.get_job(job_id).state is JobState.COMPLETED, store.get_job(job_id).reason
    document = Client(live.url, key).placement(job_id)
    mapping = document["layer_devices"]
    assert set(LAYERS) <= set(mapping) and set(mapping.values()) <= set(document["devices"])
    assert document["split_layers"] == []  # one op per layer: nothing to split

    # The JAX code of the result runs training steps with each layer's parameters where it says.
    (tmp_path / "placed_jax.py").write_text(document["code"]["jax"])
    result = _child(
        f"""
import json, sys
sys.path.insert(0, {str(tmp_path)!r})
import placed_jax
gpu_to_cpu = {{f"gpu:{{i}}": f"cpu:{{i}}" for i in range(4)}}
model = placed_jax.main({str(model_file)!r}, device_map=gpu_to_cpu, steps=2)
names = sorted(set(placed_jax.LAYER_DEVICES.values()))
where = {{
    n: sorted({{str(d) for p in pl.params for d in p.devices()}})
    for n, pl in model.layers.items()
    if pl.params
}}
print("RESULT " + json.dumps({{"where": where, "devices": [str(d) for d in model.devices], "names": names}}))
""",
        backend="jax",
    )
    for layer, devices in result["where"].items():
        assert devices == [result["devices"][result["names"].index(mapping[layer])]], layer


def test_a_placement_that_fits_nowhere_fails_the_job_without_retry(store: Store, live: LiveServer) -> None:
    _, key = create_team(store, "placers")
    huge = copy.deepcopy(TINY)
    huge["ops"][6]["param_bytes"] = 10**13  # 10 TB of weights: no device holds the head
    graph_id = _upload(live, key, huge)
    spec = JobSpec.model_validate(placement_job({"graph_id": graph_id}, max_seconds=0.5))
    job_id = submit_job(store, spec, live.settings, store.team_by_name("placers")).id
    executor = ThreadExecutor()
    _run_until_done(JobLoop(store, executor, live.settings), job_id)
    job = store.get_job(job_id)
    assert job.state is JobState.FAILED and "the placement failed" in (job.reason or "")
    assert "memory" in (job.reason or "") and len(executor.submitted) == 1
    assert store.list_trials(job_id)[0][0].attempts == 1


def test_a_crashed_placement_worker_is_retried(store: Store, live: LiveServer) -> None:
    team, key = create_team(store, "placers")
    graph_id = _upload(live, key, TINY)
    attempts: list[int] = []

    def flaky(task: TrialTask) -> None:
        attempts.append(task.attempt)
        if task.attempt == 1:
            raise RuntimeError("worker lost")
        from l2l.worker.reporter import Reporter
        from l2l.worker.trainer import run_trial

        run_trial(task.to_dict(), reporter=Reporter(task.report_url, task.trial_id, task.token, attempts=2))

    spec = JobSpec.model_validate(placement_job({"graph_id": graph_id}, max_seconds=0.5))
    job_id = submit_job(store, spec, live.settings, team).id
    _run_until_done(JobLoop(store, ThreadExecutor(placement=flaky), live.settings), job_id)
    trial = store.list_trials(job_id)[0][0]
    assert store.get_job(job_id).state is JobState.COMPLETED and attempts == [1, 2]
    assert (
        trial.state is TrialState.COMPLETED and trial.attempts == 2 and "worker lost" in (trial.error or "")
    )
    assert store.get_artifact(job_id, "placement") is not None


def test_a_new_controller_runs_the_placement_again_after_a_restart(store: Store, live: LiveServer) -> None:
    team, key = create_team(store, "placers")
    graph_id = _upload(live, key, TINY)
    spec = JobSpec.model_validate(placement_job({"graph_id": graph_id}, max_seconds=0.5))
    job_id = submit_job(store, spec, live.settings, team).id
    settings = live.settings.model_copy(
        update={"controller": live.settings.controller.model_copy(update={"lease_seconds": 0.5})}
    )
    first = ThreadExecutor(placement=lambda task: None)  # its worker dies without a word
    JobLoop(store, first, settings, owner="first").step()
    assert len(first.submitted) == 1 and store.get_job(job_id).strategy_state is not None
    time.sleep(0.6)  # the first controller's lease runs out

    second = ThreadExecutor()
    _run_until_done(JobLoop(store, second, settings, owner="second"), job_id)
    trials, total = store.list_trials(job_id)
    assert store.get_job(job_id).state is JobState.COMPLETED and total == 1  # run again, not proposed again
    assert [task.attempt for task in second.submitted] == [2] and trials[0].state is TrialState.COMPLETED


def test_a_placement_whose_graph_went_away_fails_with_a_reason(store: Store, live: LiveServer) -> None:
    team, key = create_team(store, "placers")
    graph_id = _upload(live, key, TINY)
    job_id = submit_job(
        store, JobSpec.model_validate(placement_job({"graph_id": graph_id})), live.settings, team
    ).id
    with store._write_engine.begin() as connection:  # the team's graph is gone before the job starts
        connection.exec_driver_sql(f"DELETE FROM op_graphs WHERE id = {graph_id}")
    JobLoop(store, ThreadExecutor(), live.settings).step()
    job = store.get_job(job_id)
    assert job.state is JobState.FAILED and "what to place cannot be found" in (job.reason or "")
    assert store.list_trials(job_id)[1] == 0


def test_the_model_of_an_earlier_search_job_is_placed(
    store: Store, live: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The fake trainer's final model is not a real Keras file, so the worker rebuilds the best
    architecture (real Keras) from the search's space, parameters and dataset."""
    team, _ = create_team(store, "placers")
    search_id = submit_job(store, JobSpec.model_validate(SEARCH_JOB), live.settings, team).id
    loop = JobLoop(store, ThreadExecutor(), live.settings)
    _run_until_done(loop, search_id)
    spec = JobSpec.model_validate(placement_job({"job_id": search_id}, batch_size=16, max_seconds=0.5))
    job_id = submit_job(store, spec, live.settings, team).id
    _run_until_done(loop, job_id)
    job = store.get_job(job_id)
    assert job.state is JobState.COMPLETED, job.reason
    path = store.get_artifact(job_id, "placement")
    assert path is not None
    document = json.loads(Path(path.path).read_text())
    kinds = {op["kind"] for op in document["graph"]["ops"]}
    assert "Dense" in kinds and len(document["placement"]) == len(document["graph"]["ops"])


def test_a_benchmark_source_builds_its_graph_with_the_overrides(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("L2L_GRAPH_CACHE", str(tmp_path / "graphs"))
    sizes = {"hidden": 16, "vocab": 50, "seq_len": 3, "layers": 1, "batch_size": 4}
    graph = build_graph({"benchmark": "rnnlm", "options": sizes})
    assert sum(op.name.startswith("lstm") or "/t" in op.name for op in graph.ops) >= 3  # unrolled steps
    with pytest.raises(TrialBuildError, match="no size"):
        build_graph({"benchmark": "rnnlm", "options": {"wings": 2}})


# ------------------------------------------------------------------ hardware-aware search


def test_the_hardware_step_time_is_the_placers_simulated_step() -> None:
    graph, cluster = OpGraph.from_dict(TINY), get_cluster("4gpu-pcie")
    simulator = Simulator(graph, cluster)
    expert_time = simulator.step_time(expert(graph, cluster))
    assert hardware_step_time(simulator, "expert") == pytest.approx(expert_time)
    every = [hardware_step_time(simulator, name) for name in BASELINES]
    assert hardware_step_time(simulator, "best_baseline") == pytest.approx(min(every))
    with pytest.raises(TrialBuildError, match="unknown placer"):
        hardware_step_time(simulator, "oracle")


def test_the_reward_trades_accuracy_against_the_placed_step_time() -> None:
    objective = {"metric": "val_accuracy", "mode": "max", "cost": "step_time", "target": 0.05, "weight": -0.5}
    fast = reward_from_metrics({"val_accuracy": 0.9, "step_time": 0.05}, objective)
    slow = reward_from_metrics({"val_accuracy": 0.9, "step_time": 0.2}, objective)
    assert fast == pytest.approx(0.9) and slow == pytest.approx(0.9 * 4**-0.5)
    # a slower but more accurate model wins only by enough accuracy
    assert reward_from_metrics({"val_accuracy": 0.95, "step_time": 0.2}, objective) < fast
    assert reward_from_metrics({"val_accuracy": 0.9, "step_time": math.inf}, objective) is None
    placement = {"metric": "step_time", "mode": "min", "power": 0.5}
    assert reward_from_metrics({"step_time": 0.04}, placement) == pytest.approx(-0.2)


def test_a_hardware_aware_trial_reports_its_placed_step_time(tmp_path: Path) -> None:
    from search_spaces import get_space

    class Recorder:
        def __init__(self) -> None:
            self.finals: list[dict[str, Any]] = []

        def step(self, step: int, metrics: Any) -> None:
            pass

        def final(self, metrics: Any, step: int | None = None) -> None:
            self.finals.append(dict(metrics))

    from l2l.worker.trainer import run_trial

    space = get_space("mlp")
    params = {"num_layers": 2, "units": 32, "activation": "relu", "dropout": 0.0, "learning_rate": 0.01}
    params = space.validate({**space.sample(random.Random(0)), **params})
    task = TrialTask(
        trial_id=1,
        job_id=1,
        attempt=1,
        token="t",
        report_url="http://127.0.0.1:9",
        dataset={"name": "wine", "kind": "tabular", "task": "classification"},
        space=space.to_dict(),
        params=params,
        epochs=1,
        seed=0,
        hardware={"cluster": "4gpu-pcie", "placer": "best_baseline"},
    )
    recorder = Recorder()
    metrics = run_trial(task.to_dict(), reporter=recorder)
    assert recorder.finals == [metrics]
    assert 0 < metrics["step_time"] < 1 and metrics["val_accuracy"] >= 0
    objective = {
        "metric": "val_accuracy",
        "mode": "max",
        "cost": "step_time",
        "target": 1e-3,
        "weight": -0.07,
    }
    expected = metrics["val_accuracy"] * (metrics["step_time"] / 1e-3) ** -0.07
    assert reward_from_metrics(metrics, objective) == pytest.approx(expected)
