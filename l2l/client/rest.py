"""A small client of the l2l REST API, for the command line and for notebooks."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from l2l.client.format import error_detail


class ApiError(Exception):
    """The service answered with an error; the message is its ``detail``."""


class Client:
    def __init__(
        self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None, timeout: float = 30.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)
        if api_key:
            self.use_key(api_key)

    def use_key(self, api_key: str) -> None:
        """Send this team API key with every request from now on."""
        self._http.headers["Authorization"] = f"Bearer {api_key}"

    def healthy(self) -> bool:
        try:
            return self._http.get("/health").status_code == 200
        except httpx.TransportError:
            return False

    def wait_until_healthy(self, seconds: float = 60.0, alive: Callable[[], bool] = lambda: True) -> None:
        """Wait for /health to answer; give up after ``seconds`` or as soon as ``alive()`` is False."""
        deadline = time.monotonic() + seconds
        while not self.healthy():
            if not alive():
                raise ApiError(f"the service for {self.base_url} stopped before it answered")
            if time.monotonic() > deadline:
                raise ApiError(f"the service at {self.base_url} did not answer within {seconds:.0f} s")
            time.sleep(0.5)

    def submit_job(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/jobs", json=dict(spec))

    def cancel(self, job_id: int) -> dict[str, Any]:
        return self._call("POST", f"/jobs/{job_id}/cancel")

    def pause(self, job_id: int) -> dict[str, Any]:
        return self._call("POST", f"/jobs/{job_id}/pause")

    def resume(self, job_id: int) -> dict[str, Any]:
        return self._call("POST", f"/jobs/{job_id}/resume")

    def jobs(self, offset: int = 0, limit: int = 50) -> dict[str, Any]:
        return self._call("GET", "/jobs", params={"offset": offset, "limit": limit})

    def job(self, job_id: int) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}")

    def trials(self, job_id: int, **query: Any) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}/trials", params=query)

    def upload_graph(self, graph: Mapping[str, Any]) -> dict[str, Any]:
        """Upload an op graph to place (``{name, ops: [...]}``); its id goes in a placement job."""
        return self._call("POST", "/graphs", json=dict(graph))

    def placement(self, job_id: int) -> dict[str, Any]:
        """A finished placement job's result document (see GET /jobs/{id}/placement)."""
        return self._call("GET", f"/jobs/{job_id}/placement")

    def download_model(self, job_id: int, format: str = "keras") -> tuple[bytes, str]:
        """The final model's bytes and the file name the service suggests."""
        response = self._http.get(f"/jobs/{job_id}/model", params={"format": format})
        if response.status_code >= 400:
            raise ApiError(f"GET /jobs/{job_id}/model -> {response.status_code}: {_detail(response)}")
        disposition = response.headers.get("content-disposition", "")
        filename = disposition.split("filename=")[-1].strip('"') if "filename=" in disposition else "model"
        return response.content, filename

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ApiError(f"{method} {path} -> {response.status_code}: {_detail(response)}")
        result: dict[str, Any] = response.json()
        return result


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text
    return error_detail(body.get("detail", response.text) if isinstance(body, dict) else body)
