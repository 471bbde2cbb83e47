"""The worker's client for ``POST /trials/{id}/report``."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import httpx


class ReportRejected(Exception):
    """The service refused a report (a 4xx); retrying the same report will not help."""


class Reporter:
    def __init__(self, base_url: str, trial_id: int, token: str, attempts: int = 5) -> None:
        self.url = f"{base_url.rstrip('/')}/trials/{trial_id}/report"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.attempts = attempts

    def step(self, step: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
        return self._send({"step": step, "metrics": _clean(metrics), "final": False})

    def final(self, metrics: Mapping[str, Any], step: int | None = None) -> dict[str, Any]:
        return self._send({"step": step, "metrics": _clean(metrics), "final": True})

    def _send(self, body: dict[str, Any]) -> dict[str, Any]:
        delay = 0.5
        for attempt in range(self.attempts):
            try:
                response = httpx.post(self.url, json=body, headers=self.headers, timeout=30)
            except httpx.TransportError:
                if attempt == self.attempts - 1:
                    raise
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
