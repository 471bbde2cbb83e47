"""The worker's client for ``POST /trials/{id}/report``."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx


class ReportRejected(Exception):
    """The service refused a report (a 4xx); retrying the same report will not help."""


class Reporter:
    """Sends one trial's reports. ``base_url`` may list several API replicas separated by
    commas: the trial starts with the one its id picks (so trials spread over them) and
    moves to the next whenever one does not answer."""

    def __init__(self, base_url: str, trial_id: int, token: str, attempts: int = 5) -> None:
        bases = [url.strip().rstrip("/") for url in base_url.split(",") if url.strip()]
        start = trial_id % len(bases)
        self.bases = bases[start:] + bases[:start]
        self.trial_id = trial_id
        self.headers = {"Authorization": f"Bearer {token}"}
        self.attempts = attempts

    @property
    def url(self) -> str:
        """The report address on the replica in use."""
        return f"{self.bases[0]}/trials/{self.trial_id}/report"

    def step(self, step: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
        return self._send({"step": step, "metrics": _clean(metrics), "final": False})

    def final(self, metrics: Mapping[str, Any], step: int | None = None) -> dict[str, Any]:
        return self._send({"step": step, "metrics": _clean(metrics), "final": True})

    def final_model(
        self, job_id: int, metrics: Mapping[str, Any], files: Mapping[str, Path]
    ) -> dict[str, Any]:
        """Upload a job's final model files with its test metrics (the final model's token)."""

        def send() -> httpx.Response:
            url = f"{self.bases[0]}/jobs/{job_id}/model/report"
            handles = {name: (path.name, path.read_bytes()) for name, path in files.items()}
            data = {"metrics": json.dumps(_clean(metrics))}
            return httpx.post(url, data=data, files=handles, headers=self.headers, timeout=120)

        return self._retry(send)

    def placement(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """Upload a placement trial's result document (before its final report)."""
        return self._retry(
            lambda: httpx.post(
                self.url.removesuffix("/report") + "/placement",
                json=document,
                headers=self.headers,
                timeout=120,
            )
        )

    def _send(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._retry(lambda: _client().post(self.url, json=body, headers=self.headers, timeout=30))

    def _retry(self, send: Callable[[], httpx.Response]) -> dict[str, Any]:
        delay = 0.5
        for attempt in range(self.attempts):
            try:
                response = send()
            except httpx.TransportError:
                if attempt == self.attempts - 1:
                    raise
                self.bases.append(self.bases.pop(0))  # that replica is down: try the next one
                if attempt < len(self.bases) - 1:
                    continue  # another replica may answer at once
            else:
                if response.status_code < 400:
                    result: dict[str, Any] = response.json()
                    return result
                if response.status_code < 500:
                    raise ReportRejected(f"{response.status_code}: {response.text}")
                if attempt == self.attempts - 1:
                    response.raise_for_status()
            # The service may be restarting; the report is idempotent, so sending it again is safe.
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")


_CLIENT: httpx.Client | None = None


def _client() -> httpx.Client:
    """One HTTP client per worker process: a warm worker's reports reuse its connections."""
    global _CLIENT
    if _CLIENT is None:
        _CLIENT = httpx.Client()
    return _CLIENT


def _clean(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    # JSON has no NaN; send null, which the service treats the same way (no usable value).
    cleaned: dict[str, float | None] = {}
    for name, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        cleaned[name] = number if math.isfinite(number) else None
    return cleaned
