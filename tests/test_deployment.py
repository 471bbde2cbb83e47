"""The scale-out layout in docker-compose.yml is well-formed (no Docker engine runs here)."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_has_the_scale_out_services() -> None:
    services = _compose()["services"]
    assert {"postgres", "api", "controller", "ray-head", "ray-gpu-worker"} <= set(services)
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        assert isinstance(service.get("command", []), list), name
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"


def test_services_share_one_postgres_and_one_ray_cluster() -> None:
    services = _compose()["services"]
    for name in ("api", "controller"):
        env = services[name]["environment"]
        assert env["L2L_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert "@postgres:5432/" in env["L2L_DATABASE_URL"]
    assert services["controller"]["environment"]["L2L_RAY__ADDRESS"] == "ray://ray-head:10001"
    assert "--no-controller" in services["api"]["command"]  # API replicas never run the job loop
    gpu = services["ray-gpu-worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]
    assert "--address=ray-head:6379" in services["ray-gpu-worker"]["command"]


def test_the_image_installs_every_package() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    for package in ("l2l", "controller", "search_spaces", "api"):
        assert f"COPY {package} {package}" in dockerfile


def test_every_l2l_process_shares_the_data_volume_and_finds_the_prediction_proxy() -> None:
    services = _compose()["services"]
    for name in ("api", "controller", "ray-head", "ray-gpu-worker"):
        assert "l2l-data:/data" in services[name]["volumes"], name
        assert services[name]["environment"]["L2L_DATA_DIR"] == "/data", name
    assert services["api"]["environment"]["L2L_SERVE__HOST"] == "ray-head"
    assert "8001:8001" in services["ray-head"]["ports"]
