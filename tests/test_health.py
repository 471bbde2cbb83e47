"""GET /health says whether a controller is alive, from the heartbeat it writes in the database."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from conftest import make_settings
from fastapi.testclient import TestClient
from sqlalchemy import update

from api.main import create_app
from l2l.store import Store
from l2l.store.tables import ControllerRow, utcnow


def test_health_follows_the_controller_heartbeat(store: Store, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    client = TestClient(create_app(settings, store))

    missing = client.get("/health")
    assert missing.status_code == 503 and "no controller" in missing.json()["detail"]
    assert int(missing.headers["Retry-After"]) >= 1
    assert client.get("/health/live").status_code == 200  # the API process itself is fine

    store.beat("host-a:1:abc", "host-a", 1)
    fresh = client.get("/health")
    assert fresh.status_code == 200, fresh.text
    body = fresh.json()["controller"]
    assert body["id"] == "host-a:1:abc" and 0 <= body["heartbeat_age_seconds"] < 30

    old = utcnow() - timedelta(seconds=settings.controller.heartbeat_stale_seconds + 5)
    with store._write_engine.begin() as connection:  # the controller went silent
        connection.execute(update(ControllerRow).values(heartbeat_at=old))
    stale = client.get("/health")
    assert stale.status_code == 503 and "heartbeat" in stale.json()["detail"]
    assert "Retry-After" in stale.headers

    store.beat("host-b:2:def", "host-b", 2)  # another controller (API replicas see it too)
    assert client.get("/health").json()["controller"]["id"] == "host-b:2:def"
    store.remove_controller("host-b:2:def")
    assert client.get("/health").status_code == 503
