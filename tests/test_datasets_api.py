"""Dataset uploads through the real app: checked first, stored only when they pass."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import make_settings
from fastapi.testclient import TestClient
from PIL import Image

from api.main import create_app
from l2l.service.datasets import load_dataset
from l2l.service.jobs import create_team
from l2l.store import Store


@pytest.fixture
def settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    return make_settings(tmp_path).model_copy(
        update={"api": make_settings(tmp_path).api.model_copy(update={"max_upload_mb": 0.05})}
    )


@pytest.fixture
def client(store: Store, settings) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    _, key = create_team(store, "alpha")
    with TestClient(create_app(settings, store), headers={"Authorization": f"Bearer {key}"}) as test_client:
        yield test_client


def _csv(rows: int = 40, classes: int = 2) -> bytes:
    lines = ["size,colour,weight,label"]
    for i in range(rows):
        colour = ["red", "green", ""][i % 3]  # a categorical column with gaps
        weight = "" if i % 7 == 0 else str(i * 1.5)
        lines.append(f"{i % 9},{colour},{weight},{'ab'[i % classes] if classes > 1 else 'a'}")
    return ("\n".join(lines) + "\n").encode()


def _upload(client: TestClient, name: str, content: bytes, **form: str):  # type: ignore[no-untyped-def]
    return client.post("/datasets", files={"file": (name, content)}, data=form)


def _stored_files(settings) -> list[Path]:  # type: ignore[no-untyped-def]
    root = settings.data_dir / "datasets"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_csv_upload_infers_types_and_a_job_can_use_it(client: TestClient, settings) -> None:  # type: ignore[no-untyped-def]
    response = _upload(client, "fruit.csv", _csv(), target="label")
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert dataset["name"] == "fruit" and dataset["kind"] == "tabular" and dataset["task"] == "classification"
    columns = dataset["summary"]["columns"]
    assert columns["colour"] == {"type": "text", "missing": 13}
    assert columns["weight"]["type"] == "number" and columns["weight"]["missing"] == 6
    assert dataset["summary"]["classes"] == ["a", "b"]
    job = client.post(
        "/jobs",
        json={
            "dataset": {"id": dataset["id"]},
            "space": "mlp",
            "strategy": "random",
            "budget": {"trials": 2},
        },
    )
    assert job.status_code == 201, job.text
    spec = job.json()["spec"]["dataset"]
    assert spec["dataset_id"] == dataset["id"] and spec["split_seed"] == 0
    loaded = load_dataset(spec, seed=spec["split_seed"])
    assert len(loaded.x_train) + len(loaded.x_val) + len(loaded.x_test) == 40
    assert np.isfinite(loaded.x_train).all()  # gaps filled, colours one-hot encoded


@pytest.mark.parametrize(
    ("filename", "content", "form", "status", "expected"),
    [
        ("fruit.csv", _csv(), {"target": "price"}, 422, "'price' is not in the CSV; its columns are size"),
        ("fruit.csv", _csv(), {}, 422, "needs 'target'"),
        ("fruit.csv", _csv(rows=5), {"target": "label"}, 422, "at least 10"),
        ("fruit.csv", _csv(classes=1), {"target": "label"}, 422, "single value"),
        (
            "fruit.csv",
            b"a,b\n1,2\n\xff\xfe,secret\n",
            {"target": "b"},
            422,
            "the CSV is not UTF-8 text (byte 0xff at line 3); save it as UTF-8 CSV",
        ),
        ("notes.txt", b"hello", {}, 422, "upload a .csv"),
        ("big.csv", b"x,label\n" + b"1,2\n" * 20_000, {"target": "label"}, 413, "0.05 MB"),
        ("data.npz", b"not a zip", {}, 422, "cannot read the .npz"),
        ("images.zip", b"not a zip", {}, 422, "cannot be read"),
    ],
)
def test_bad_uploads_get_a_clear_4xx_and_leave_nothing_behind(
    client: TestClient,
    settings,
    filename: str,
    content: bytes,
    form: dict,
    status: int,
    expected: str,  # type: ignore[no-untyped-def]
) -> None:
    response = _upload(client, filename, content, **form)
    assert response.status_code == status, response.text
    assert expected in response.json()["detail"]
    assert "secret" not in response.json()["detail"]  # no error echoes the file's content
    assert client.get("/datasets").json()["items"] == []
    assert _stored_files(settings) == []


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_npz_upload(client: TestClient) -> None:
    rng = np.random.default_rng(0)
    ok = _upload(client, "points.npz", _npz(x=rng.normal(size=(30, 4)), y=np.arange(30) % 3))
    assert ok.status_code == 201, ok.text
    assert ok.json()["summary"]["classes"] == {"0": 10, "1": 10, "2": 10}
    missing = _upload(client, "points.npz", _npz(features=np.zeros((30, 4)), y=np.zeros(30)))
    assert missing.status_code == 422 and "arrays named x and y" in missing.json()["detail"]
    mismatch = _upload(client, "points.npz", _npz(x=np.zeros((30, 4)), y=np.zeros(29)))
    assert mismatch.status_code == 422 and "one label each" in mismatch.json()["detail"]


def _image_zip(classes: dict[str, int], broken: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for label, count in classes.items():
            for i in range(count):
                image = Image.new("L", (12, 12), color=40 * i if label == "dark" else 255 - 10 * i)
                png = io.BytesIO()
                image.save(png, format="PNG")
                bundle.writestr(f"shapes/{label}/{i}.png", png.getvalue())
        if broken:
            bundle.writestr(broken, b"this is no image")
    return buffer.getvalue()


def test_zip_of_image_folders(client: TestClient) -> None:
    ok = _upload(client, "shapes.zip", _image_zip({"dark": 6, "light": 6}))
    assert ok.status_code == 201, ok.text
    dataset = ok.json()
    assert dataset["kind"] == "image" and dataset["summary"]["shape"] == [12, 12, 12, 1]
    assert dataset["summary"]["classes"] == {"dark": 6, "light": 6}
    one_class = _upload(client, "shapes.zip", _image_zip({"dark": 12}))
    assert one_class.status_code == 422 and "same label" in one_class.json()["detail"]
    broken = _upload(client, "shapes.zip", _image_zip({"dark": 6, "light": 6}, broken="shapes/dark/x.png"))
    assert broken.status_code == 422 and "shapes/dark/x.png" in broken.json()["detail"]


def test_datasets_belong_to_their_team(client: TestClient, store: Store) -> None:
    dataset_id = _upload(client, "fruit.csv", _csv(), target="label").json()["id"]
    _, other_key = create_team(store, "beta")
    other = {"Authorization": f"Bearer {other_key}"}
    assert client.get(f"/datasets/{dataset_id}", headers=other).status_code == 404
    job = {"dataset": {"id": dataset_id}, "space": "mlp", "budget": {"trials": 1}}
    refused = client.post("/jobs", json=job, headers=other)
    assert refused.status_code == 422 and "no uploaded dataset" in refused.json()["detail"]
