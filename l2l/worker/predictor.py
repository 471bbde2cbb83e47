"""Predictions from a process that keeps models loaded: a Ray Serve deployment.

The controller deploys it at start-up with no replica at all; the first request
starts one (scale from zero), which loads each job's model on first use and keeps
it; when no request has come for ``idle_seconds`` the replica is stopped again. The
API process reaches it over HTTP and so never imports Ray or TensorFlow.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from l2l.service.preprocessing import InputError, Preprocessor

APP_NAME = "l2l-predictor"
ROUTE = "/predict"
#: Models one replica keeps loaded; the least recently used goes first.
MAX_MODELS = 8


class Predictor:
    def __init__(self) -> None:
        self._models: OrderedDict[str, tuple[Any, Preprocessor]] = OrderedDict()

    async def __call__(self, request: Request) -> JSONResponse:
        body = await request.json()
        try:
            model, preprocessor = self._load(body["model"], body["preprocessing"])
            inputs = preprocessor.transform(body["rows"])
        except InputError as error:
            return JSONResponse({"detail": str(error)}, status_code=422)
        started = time.perf_counter()
        outputs = model.predict(inputs, verbose=0, batch_size=256)
        return JSONResponse(
            {
                "predictions": preprocessor.labels(outputs),
                "seconds": time.perf_counter() - started,
            }
        )

    def _load(self, model_path: str, preprocessing_path: str) -> tuple[Any, Preprocessor]:
        key = f"{model_path}:{Path(model_path).stat().st_mtime_ns}"
        if key not in self._models:
            import keras

            preprocessor = Preprocessor.from_dict(json.loads(Path(preprocessing_path).read_text()))
            self._models[key] = (keras.models.load_model(model_path), preprocessor)
            while len(self._models) > MAX_MODELS:
                self._models.popitem(last=False)
        self._models.move_to_end(key)
        return self._models[key]


def start_predictor(host: str, port: int, idle_seconds: float) -> None:
    """Start Serve's HTTP proxy and deploy the predictor with no replica running yet."""
    serve.start(http_options={"host": host, "port": port})
    deployment = serve.deployment(
        Predictor,
        name="predictor",
        autoscaling_config={
            "min_replicas": 0,
            "initial_replicas": 0,
            "max_replicas": 2,
            "target_ongoing_requests": 4,
            "downscale_delay_s": idle_seconds,
            "downscale_to_zero_delay_s": idle_seconds,
        },
        # No CPU reserved: idle warm trial workers may hold every CPU of the cluster, and a
        # prediction must not wait for them to be let go (they stop after worker.idle_seconds).
        ray_actor_options={"num_cpus": 0},
    )
    serve.run(deployment.bind(), name=APP_NAME, route_prefix=ROUTE, blocking=False)


def stop_predictor() -> None:
    serve.shutdown()
