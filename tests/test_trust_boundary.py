"""What a team sends is data: no path is opened, no name imported, no input costs a 500.

Each test is an attack from the issue, made through the real app on a real database. Files
opened and modules imported are seen with Python's audit hooks (``sys.addaudithook``), so a
test fails if the service so much as opens the path a request named.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_settings
from fastapi.testclient import TestClient

from api.main import create_app
from l2l.client import cli
from l2l.service.jobs import create_team
from l2l.settings import get_settings
from l2l.store import Store

JOB: dict[str, Any] = {
    "dataset": "wine",
    "space": "mlp",
    "strategy": "random",
    "budget": {"trials": 2, "concurrency": 1, "epochs": 1},
    "seed": 1,
}


class AuditLog:
    """Paths opened and modules imported while ``recording`` (an audit hook cannot be removed)."""

    def __init__(self) -> None:
        self.recording = False
        self.opened: list[str] = []
        self.imported: list[str] = []

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.recording:
            return
        if event == "open" and isinstance(args[0], (str, bytes, Path)):
            self.opened.append(str(args[0]))
        elif event == "import":
            self.imported.append(str(args[0]))


_AUDIT = AuditLog()
sys.addaudithook(_AUDIT)


@pytest.fixture
def audit() -> Iterator[AuditLog]:
    _AUDIT.opened.clear()
    _AUDIT.imported.clear()
    _AUDIT.recording = True
    try:
        yield _AUDIT
    finally:
        _AUDIT.recording = False


@pytest.fixture
def keys(store: Store) -> dict[str, str]:
    return {name: create_team(store, name)[1] for name in ("alpha", "beta")}


@pytest.fixture
def client(store: Store, tmp_path: Path, keys: dict[str, str]) -> Iterator[TestClient]:
    app = create_app(make_settings(tmp_path), store)
    with TestClient(app, headers={"Authorization": f"Bearer {keys['alpha']}"}) as test_client:
        yield test_client


def _details(response: Any) -> str:
    return json.dumps(response.json())


def test_a_path_in_a_dataset_is_refused_and_never_opened(
    client: TestClient, tmp_path: Path, audit: AuditLog
) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("password,label\n" + "hunter2,1\n" * 20)
    audit.opened.clear()
    for dataset in (
        {"name": "csv", "path": str(secret), "target": "label"},
        {"name": "npz", "path": str(secret), "kind": "tabular", "task": "classification"},
        {"name": "digits", "path": str(secret)},
        {"path": str(secret)},
    ):
        response = client.post("/jobs", json={**JOB, "dataset": dataset})
        assert response.status_code == 422, response.text
        assert "hunter2" not in response.text and "password" not in response.text
    assert "cannot name a file on the server" in _details(response)
    assert not [path for path in audit.opened if "secret" in path]
    assert client.get("/jobs").json()["total"] == 0


def test_the_database_file_cannot_be_named(sqlite_store: Store, tmp_path: Path, audit: AuditLog) -> None:
    _, key = create_team(sqlite_store, "alpha")
    database = sqlite_store.url.removeprefix("sqlite:///")
    app = create_app(make_settings(tmp_path), sqlite_store)
    with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as client:
        audit.opened.clear()
        response = client.post(
            "/jobs", json={**JOB, "dataset": {"name": "csv", "path": database, "target": "a"}}
        )
        assert response.status_code == 422
        # The API opened the database only through its driver (which the audit hook does not
        # see), never as a file named by the request: its SQLite locks stay intact.
        assert database not in audit.opened
        assert client.post("/jobs", json=JOB).status_code == 201


@pytest.mark.parametrize(
    "space",
    [
        {"keras_tuner": "os:system"},
        {"keras_tuner": "sys:exit"},
        {"keras_tuner": "tests.evil_module:build"},
        {"name": "s", "builder": "os:system", "decisions": [{"name": "a", "options": [1, 2]}]},
        {
            "name": "s",
            "builder": "search_spaces.mlp_builder:build",
            "canonical": "tests.evil_module:build",
            "decisions": [{"name": "units", "options": [8, 16]}],
        },
        {
            "name": "s",
            "builder": "search_spaces.keras_tuner_space:build_model",
            "settings": {"build": "tests.evil_module:build"},
            "decisions": [{"name": "a", "options": [1, 2]}],
        },
    ],
)
def test_module_references_outside_the_registry_are_refused_unimported(
    client: TestClient, space: dict[str, Any], audit: AuditLog
) -> None:
    response = client.post("/jobs", json={**JOB, "space": space})
    assert response.status_code == 422, response.text
    detail = _details(response)
    assert "is not registered on this service" in detail and "kt_example" in detail and "mlp" in detail
    assert "tests.evil_module" not in sys.modules
    assert not [name for name in audit.imported if "evil" in name]
    assert client.get("/jobs").json()["total"] == 0


def test_a_registered_build_function_is_accepted_by_name(client: TestClient) -> None:
    response = client.post("/jobs", json={**JOB, "dataset": "digits", "space": {"keras_tuner": "kt_example"}})
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["space"]["keras_tuner"] == "tests.kt_build_example:build"


def test_an_entry_point_registers_a_builder(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    from search_spaces import registry

    entry = EntryPoint("team_cnn", "tests.kt_build_example:build", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [entry] if group == entry.group else [])
    registry.entry_point_references.cache_clear()  # read once per process: as if it started now
    try:
        assert registry.resolve("team_cnn", "builder") == "tests.kt_build_example:build"
    finally:
        monkeypatch.undo()
        registry.entry_point_references.cache_clear()


def test_benchmark_options_are_sizes_only(client: TestClient, tmp_path: Path) -> None:
    placement = {"graph": {"benchmark": "nmt", "options": {"cache_dir": str(tmp_path / "x")}}}
    response = client.post("/jobs", json={"kind": "placement", "placement": placement})
    assert response.status_code == 422 and "has no size 'cache_dir'" in _details(response)
    placement["graph"]["options"] = {"layers": 10**30}
    assert client.post("/jobs", json={"kind": "placement", "placement": placement}).status_code == 422


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "-Infinity", "1e999", "0.01"])
def test_resources_must_be_finite_and_at_least_the_cpu_floor(client: TestClient, amount: str) -> None:
    body = json.dumps(JOB).replace('"epochs": 1}', f'"epochs": 1, "resources": {{"CPU": {amount}}}}}')
    response = client.post("/jobs", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["detail"], (str, list))


@pytest.mark.parametrize(
    "body",
    [
        '"objective": {"metric": "val_accuracy", "cost": "parameters", "target": 1e999}',
        '"objective": {"metric": "val_accuracy", "cost": "parameters", "target": 5, "weight": -Infinity}',
        '"strategy": {"name": "random", "options": {"x": NaN}}',
        '"dataset": {"name": "digits", "split_seed": NaN}',
        '"dataset": {"name": "digits", "split_seed": "x"}',
        '"dataset": {"name": "digits", "split_seed": 1e999}',
    ],
)
def test_non_finite_numbers_anywhere_in_a_job_are_a_422(client: TestClient, body: str) -> None:
    text = json.dumps(JOB)[:-1] + ", " + body + "}"
    for key in ("strategy", "dataset"):
        if f'"{key}"' in body:
            text = text.replace(f'"{key}": {json.dumps(JOB[key])}, ', "")
    response = client.post("/jobs", content=text, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text


def test_huge_ids_and_offsets_are_404_or_422(client: TestClient) -> None:
    huge = 2**64 + 5
    for path in (f"/jobs/{huge}", f"/datasets/{huge}", f"/graphs/{huge}", f"/jobs/{2**63}/trials"):
        assert client.get(path).status_code in (404, 422), path
    assert client.get(f"/jobs?offset={huge}").status_code == 422
    for dataset in ({"id": huge}, {"id": 2**63}, {"id": -1}, {"id": "1"}):
        assert client.post("/jobs", json={**JOB, "dataset": dataset}).status_code == 422
    warm = {**JOB, "warm_start": {"job_id": 2**63}}
    assert client.post("/jobs", json=warm).status_code == 422
    # A worker's report: a trial id past 64 bits names no trial (the fast path hands it to the
    # route, which stores steps through the same batch writer); a step past 64 bits is refused.
    bearer = {"Authorization": "Bearer not-a-token"}
    for body in ({"step": 3, "metrics": {}}, {"step": 3, "metrics": {}, "": {"x": False}}):
        for trial_id in (2**31 + 5, 2**63):  # past PostgreSQL's 32-bit id column, past 64 bits
            assert client.post(f"/trials/{trial_id}/report", json=body, headers=bearer).status_code == 404
    answer = client.post("/trials/1/report", json={"step": 2**64, "metrics": {}}, headers=bearer)
    assert answer.status_code == 422


def test_a_graph_that_is_not_utf8_is_a_422(client: TestClient) -> None:
    response = client.post(
        "/graphs", content=b'{"name": "\xff\xfe"}', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and "not UTF-8" in response.json()["detail"]
    deep = b"[" * 100_000 + b"]" * 100_000
    assert (
        client.post("/graphs", content=deep, headers={"content-type": "application/json"}).status_code == 422
    )


def test_validation_errors_echo_no_input(client: TestClient) -> None:
    response = client.post("/jobs", json={**JOB, "budget": {"trials": "x" * 10_000}})
    assert response.status_code == 422
    for item in response.json()["detail"]:
        assert set(item) == {"loc", "msg", "type"}
    assert "x" * 100 not in response.text


def test_failed_authentications_are_limited_per_address(
    store: Store, tmp_path: Path, keys: dict[str, str]
) -> None:
    settings = make_settings(tmp_path).model_copy(
        update={"security": get_settings().security.model_copy(update={"auth_failures_per_minute": 3})}
    )
    with TestClient(create_app(settings, store)) as client:
        bad = {"Authorization": "Bearer nope"}
        codes = [client.get("/jobs", headers=bad).status_code for _ in range(3)]
        assert codes == [401, 401, 401]
        for attempt in (client.get("/jobs", headers=bad), client.post("/jobs", json=JOB, headers=bad)):
            assert attempt.status_code == 429 and int(attempt.headers["Retry-After"]) >= 1
        # Even the right key waits: the address is not told whether its guesses got closer.
        good = {"Authorization": f"Bearer {keys['alpha']}"}
        assert client.get("/jobs", headers=good).status_code == 429
        # The web login form is held to the same limit.
        login = client.post("/login", data={"key": keys["alpha"]}, follow_redirects=False)
        assert login.status_code == 429 and "Retry-After" in login.headers


def test_cookie_writes_from_another_site_are_refused(
    store: Store, tmp_path: Path, keys: dict[str, str]
) -> None:
    with TestClient(create_app(make_settings(tmp_path), store), base_url="http://l2l.test") as client:
        client.cookies.set("l2l_key", keys["alpha"])
        evil = client.post("/jobs", json=JOB, headers={"Origin": "https://evil.example"})
        assert evil.status_code == 403 and "cross-site" in evil.json()["detail"]
        evil_referer = client.post("/jobs", json=JOB, headers={"Referer": "https://evil.example/form"})
        assert evil_referer.status_code == 403
        same = client.post("/jobs", json=JOB, headers={"Origin": "http://l2l.test"})
        assert same.status_code == 201, same.text
        assert client.get("/jobs").json()["total"] == 1


def _run_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store: Store, *argv: str) -> int:
    monkeypatch.setenv("L2L_DATABASE_URL", store.url)
    monkeypatch.setenv("L2L_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        return cli.main(list(argv))
    finally:
        get_settings.cache_clear()


def test_revoke_key_stops_the_key_at_once(
    client: TestClient, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.get("/jobs").status_code == 200
    assert _run_cli(monkeypatch, tmp_path, store, "admin", "revoke-key", "alpha") == 0
    assert client.get("/jobs").status_code == 401
    assert client.post("/jobs", json=JOB).status_code == 401
    assert _run_cli(monkeypatch, tmp_path, store, "admin", "revoke-key", "nobody") == 2


def test_admin_add_dataset_gives_a_team_a_server_file(
    client: TestClient,
    store: Store,
    tmp_path: Path,
    keys: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = tmp_path / "server-side.csv"
    source.write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
    argv = ("admin", "add-dataset", "--team", "alpha", "--target", "label", str(source))
    assert _run_cli(monkeypatch, tmp_path, store, *argv) == 0
    named = json.loads(capsys.readouterr().out.strip())
    response = client.post("/jobs", json={**JOB, "dataset": named})
    assert response.status_code == 201, response.text
    stored = response.json()["spec"]["dataset"]
    assert stored["path"] != str(source) and Path(stored["path"]).is_relative_to(tmp_path / "datasets")
    beta = client.post(
        "/jobs", json={**JOB, "dataset": named}, headers={"Authorization": f"Bearer {keys['beta']}"}
    )
    assert beta.status_code == 422  # another team's dataset is as good as none
    bad = _run_cli(monkeypatch, tmp_path, store, "admin", "add-dataset", "--team", "alpha", str(source))
    assert bad == 2 and "needs 'target'" in capsys.readouterr().err


def test_an_upload_check_stops_at_its_deadline(sqlite_store: Store, tmp_path: Path) -> None:
    import io

    from l2l.service.datasets import DatasetError
    from l2l.service.uploads import save_upload

    team, _ = create_team(sqlite_store, "alpha")
    settings = make_settings(tmp_path)
    no_time = settings.uploads.model_copy(update={"max_seconds": 0.0})
    settings = settings.model_copy(update={"uploads": no_time})
    rows = "a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(50))
    with pytest.raises(DatasetError, match="took more than 0 s"):
        save_upload(sqlite_store, settings, team.id, "slow.csv", io.BytesIO(rows.encode()), target="label")
    assert sqlite_store.list_datasets(team.id) == []
    assert not list((tmp_path / "datasets").rglob("*.csv"))  # nothing half-written is left
