"""A newcomer's image job, for real: upload a zip of PNGs, submit with the defaults, train (Keras,
in this process), and get a model clearly above chance; then its predictions for PNGs from the
service, and the same answers from the downloaded model with docs/predictions.md's snippet."""

from __future__ import annotations

import io
import re
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import HANG_SECONDS, LiveServer, free_port, make_settings

from l2l.loop import JobLoop
from l2l.service.chance import beats_clearly
from l2l.service.jobs import create_team
from l2l.service.jobspec import default_epochs
from l2l.settings import ServeSettings
from l2l.store import Store
from l2l.store.states import JobState

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("bars", "columns", "squares")


def shape_image(kind: str, rng: np.random.Generator) -> bytes:
    """A 16x16 grey PNG: a bright horizontal bar, vertical bar or square at a random place, on noise."""
    from PIL import Image

    pixels = rng.integers(0, 60, size=(16, 16)).astype(np.uint8)
    at = int(rng.integers(3, 12))
    if kind == "bars":
        pixels[at : at + 2, 2:14] = 230
    elif kind == "columns":
        pixels[2:14, at : at + 2] = 230
    else:
        corner = int(rng.integers(2, 8))
        pixels[corner : corner + 6, corner : corner + 6] = 230
    out = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(out, format="PNG")
    return out.getvalue()


def shapes_zip(per_class: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as bundle:
        for kind in CLASSES:
            for i in range(per_class):
                bundle.writestr(f"shapes/{kind}/{i:03d}.png", shape_image(kind, rng))
    return out.getvalue()


class PredictionService:
    """The real predictor (l2l.worker.predictor.Predictor) behind plain uvicorn instead of Ray Serve."""

    def __init__(self, settings: ServeSettings) -> None:
        import uvicorn
        from starlette.applications import Starlette
        from starlette.routing import Route

        from l2l.worker.predictor import ROUTE, Predictor

        predictor = Predictor()

        async def predict(request: Any) -> Any:
            return await predictor(request)

        app = Starlette(routes=[Route(ROUTE, predict, methods=["POST"])])
        config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> PredictionService:
        self.thread.start()
        deadline = time.monotonic() + HANG_SECONDS
        while not self.server.started:
            assert time.monotonic() < deadline, "the prediction service did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def service(sqlite_store: Store, tmp_path: Path) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    settings = make_settings(tmp_path, port=free_port())
    settings = settings.model_copy(update={"serve": ServeSettings(port=free_port())})
    _, key = create_team(sqlite_store, "newcomer")
    with LiveServer(sqlite_store, settings) as server:
        yield server, {"Authorization": f"Bearer {key}"}


def test_the_default_job_on_a_small_image_upload_learns_and_predicts_pngs(
    service: tuple[LiveServer, dict[str, str]],
    sqlite_store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("keras")
    from l2l.worker.inline_executor import InlineExecutor

    server, auth = service
    http = httpx.Client(base_url=server.url, headers=auth, timeout=120)

    # 180 PNGs in 3 classes, uploaded as a newcomer would, then a job that names nothing but the data.
    uploaded = http.post(
        "/datasets", files={"file": ("shapes.zip", shapes_zip(60, seed=1))}, data={"name": "shapes"}
    )
    assert uploaded.status_code == 201, uploaded.text
    dataset_id = uploaded.json()["id"]
    submitted = http.post("/jobs", json={"dataset": {"id": dataset_id}, "budget": {"trials": 1}, "seed": 0})
    assert submitted.status_code == 201, submitted.text
    job = submitted.json()
    assert job["name"] == "reinforce on shapes (mlp)"  # the upload's name, not "npz"
    assert job["spec"]["space"]["name"] == "mlp"  # a small image set: the MLP, not the cell space
    assert job["spec"]["budget"]["epochs"] == default_epochs(180) == 38

    loop = JobLoop(sqlite_store, InlineExecutor(sqlite_store), server.settings)
    deadline = time.monotonic() + HANG_SECONDS
    while not sqlite_store.get_job(job["id"]).state.is_finished():
        assert time.monotonic() < deadline, f"the job did not finish in {HANG_SECONDS:.0f} s"
        if not loop.step():
            time.sleep(0.05)

    job = http.get(f"/jobs/{job['id']}").json()
    assert job["state"] == JobState.COMPLETED.value, job["reason"]
    chance = job["chance"]
    assert chance["metric"] == "accuracy" and chance["guess"].startswith("always guessing the most frequent")
    assert chance["validation"] == pytest.approx(1 / 3, abs=0.01) and chance["test"] == pytest.approx(1 / 3)
    test_accuracy = job["final_model"]["test_metrics"]["test_accuracy"]
    assert beats_clearly(test_accuracy, chance["test"], "accuracy") and test_accuracy >= 0.8, job
    assert job["warning"] is None

    # Predictions for PNGs: one picture, and a zip of them, resized as the training images were.
    rng = np.random.default_rng(99)
    pictures = {f"new/{kind}.png": shape_image(kind, rng) for kind in CLASSES}
    down = http.post(
        f"/jobs/{job['id']}/predict/file", files={"file": ("bars.png", pictures["new/bars.png"])}
    )
    assert down.status_code == 409 and "does not answer" in down.json()["detail"]
    with PredictionService(server.settings.serve):
        one = http.post(
            f"/jobs/{job['id']}/predict/file", files={"file": ("bars.png", pictures["new/bars.png"])}
        )
        assert one.status_code == 200, one.text
        assert one.json()["names"] == ["bars.png"] and len(one.json()["predictions"]) == 1
        bundle = io.BytesIO()
        with zipfile.ZipFile(bundle, "w") as archive:
            for name, data in pictures.items():
                archive.writestr(name, data)
        many = http.post(f"/jobs/{job['id']}/predict/file", files={"file": ("new.zip", bundle.getvalue())})
        assert many.status_code == 200, many.text
    served = [answer["label"] for answer in many.json()["predictions"]]
    assert many.json()["names"] == sorted(pictures)
    assert sum(label == kind for label, kind in zip(served, sorted(CLASSES), strict=True)) >= 2

    # The same answers from the downloaded model and preprocessing.json, with the documented snippets.
    monkeypatch.chdir(tmp_path)
    model_file, prep_file = tmp_path / "l2l-job-7.keras", tmp_path / "l2l-job-7-preprocessing.json"
    model_file.write_bytes(http.get(f"/jobs/{job['id']}/model", params={"format": "keras"}).content)
    prep_file.write_bytes(http.get(f"/jobs/{job['id']}/model", params={"format": "preprocessing"}).content)
    snippet = _documented_snippets()
    namespace: dict[str, Any] = {}
    exec(snippet[0], namespace)  # noqa: S102 - the documentation's own code, tested as written
    import json

    import keras
    from PIL import Image

    model = keras.models.load_model(model_file)
    prep = json.loads(prep_file.read_text())
    height, width, channels = prep["input_shape"]
    pixels = [
        np.asarray(Image.open(io.BytesIO(pictures[name])).convert("L").resize((width, height)))
        for name in sorted(pictures)
    ]
    outputs = model.predict(namespace["prepare"](pixels, prep), verbose=0)
    assert namespace["answers"](outputs, prep) == served

    (tmp_path / "cat.png").write_bytes(pictures["new/bars.png"])
    exec(snippet[1], namespace)  # noqa: S102 - the usage example, as written
    assert capsys.readouterr().out.strip() == repr([served[0]])  # "new/bars.png" sorts first


def _documented_snippets() -> list[str]:
    text = (REPO / "docs" / "predictions.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
