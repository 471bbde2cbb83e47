"""A placement job's page in a real headless Chromium (the ``browser`` fixture in conftest.py).

A team uploads a small op graph through the API, places it through the /new form, and the
real job loop runs the real placement worker (the fake executor's default for placement
trials) against a live server on SQLite. Then the page is read as a user sees it and checked
against GET /jobs/{id}/placement: the step times, the baselines, the graph coloured by device
and one timeline row per device. Skipped, saying why, where Chromium is not installed.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import LiveServer, free_port, make_settings, screenshot, wait_for
from fakes import ThreadExecutor

from l2l.client import Client
from l2l.loop import JobLoop
from l2l.service.jobs import create_team
from l2l.settings import Settings
from l2l.store import Store


def _towers(count: int = 4, depth: int = 3) -> dict[str, Any]:
    """An input, ``count`` independent towers of ``depth`` ops, a join and a head: worth spreading."""
    ops: list[dict[str, Any]] = [{"name": "input", "flops": 0, "output_bytes": 2_000_000, "kind": "Input"}]
    for t in range(count):
        previous = "input"
        for k in range(depth):
            name = f"t{t}/dense_{k}"
            ops.append(
                {
                    "name": name,
                    "flops": 3e10,
                    "output_bytes": 4_000_000,
                    "param_bytes": 8_000_000,
                    "inputs": [previous],
                    "layer": f"tower_{t}",
                    "kind": "Dense",
                }
            )
            previous = name
    towers = [f"t{t}/dense_{depth - 1}" for t in range(count)]
    ops.append({"name": "join", "flops": 1e9, "output_bytes": 1_000_000, "inputs": towers, "kind": "Concat"})
    ops.append({"name": "head", "flops": 1e10, "output_bytes": 40_000, "inputs": ["join"], "kind": "Dense"})
    return {"name": "four-towers", "ops": ops}


GRAPH = _towers()


def _settings(tmp_path: Path) -> Settings:
    settings = make_settings(tmp_path, port=free_port(), max_retries=1)
    placement = settings.placement.model_copy(update={"progress_seconds": 0.3})
    return settings.model_copy(update={"placement": placement})


def _ms(text: str) -> float:
    """The number of a step time as placement.js writes it ("12.34 ms")."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?(?:e[+-]?\d+)?) ms", text.strip())
    assert match, f"not a step time: {text!r}"
    return float(match.group(1))


def _rgb(css: str) -> tuple[int, int, int]:
    """A computed colour, "rgb(0, 114, 178)" or "rgba(0, 114, 178, 1)", as its three channels."""
    channels = re.findall(r"\d+", css)
    assert len(channels) >= 3, f"not a colour: {css!r}"
    return int(channels[0]), int(channels[1]), int(channels[2])


def test_a_placement_in_the_browser(browser: Any, sqlite_store: Store, tmp_path: Path) -> None:
    store = sqlite_store
    settings = _settings(tmp_path)
    _, key = create_team(store, "placers")
    loop = JobLoop(store, ThreadExecutor(), settings)
    stop = threading.Event()
    driving = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    with LiveServer(store, settings) as server:
        driving.start()
        client = Client(server.url, key)
        try:
            graph_id = int(client.upload_graph(GRAPH)["id"])
            job_id = _place_in_the_form(browser, server.url, key, graph_id)
            _check_the_page(browser, client.placement(job_id))
        except Exception:
            screenshot(browser, "placement-failure.png")  # what the browser showed when it failed
            raise
        finally:
            client.close()
            stop.set()
            driving.join(timeout=10)


def _place_in_the_form(driver: Any, url: str, key: str, graph_id: int) -> int:
    """Log in, place the uploaded graph on four PCIe GPUs for a second, and wait for the result."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    find = driver.find_element
    driver.get(url + "/new")
    find(By.ID, "key").send_keys(key)
    find(By.CSS_SELECTOR, "form.stack button[type=submit]").click()
    wait_for("the form opens after the login", lambda: driver.current_url.endswith("/new"))

    find(By.ID, "kind-placement").click()
    Select(find(By.ID, "source")).select_by_value(f"graph:{graph_id}")
    Select(find(By.ID, "cluster")).select_by_value("4gpu-pcie")
    Select(find(By.ID, "placer")).select_by_value("random")
    find(By.ID, "max-seconds").clear()
    find(By.ID, "max-seconds").send_keys("1")
    find(By.ID, "submit-job").click()
    wait_for("the job page opens", lambda: "/job/" in driver.current_url)
    job_id = int(driver.current_url.rsplit("/", 1)[1])
    assert find(By.ID, "job").get_attribute("data-kind") == "placement"
    assert f"uploaded graph {graph_id}" in find(By.CSS_SELECTOR, ".spec-line").text

    wait_for("the job completes", lambda: find(By.ID, "job-state").text.lower() == "completed")
    wait_for("the placement is drawn", lambda: driver.find_elements(By.CSS_SELECTOR, "svg[data-timeline]"))
    return job_id


def _check_the_page(driver: Any, doc: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By

    find, find_all = driver.find_element, driver.find_elements
    devices, placement, ops = doc["devices"], doc["placement"], doc["graph"]["ops"]
    used = set(placement)
    assert len(ops) == len(GRAPH["ops"]) and len(devices) == 4

    # The summary: the learned and the expert step time, as the document has them (4 digits shown).
    stats = {
        row.get_attribute("data-stat"): row.find_element(By.TAG_NAME, "dd").text
        for row in find_all(By.CSS_SELECTOR, "#placement-stats [data-stat]")
    }
    assert _ms(stats["learned-ms"]) == pytest.approx(doc["step_time_ms"], rel=1e-3)
    assert _ms(stats["expert-ms"]) == pytest.approx(doc["baselines"]["expert"]["step_time_ms"], rel=1e-3)
    assert {"speedup", "best-baseline", "lower-bound"} <= set(stats)
    assert _ms(stats["lower-bound"]) == pytest.approx(doc["lower_bound_ms"], rel=1e-3)

    # The baselines: a row each, in the document's order, with its step time and its multiple.
    rows = find_all(By.CSS_SELECTOR, "#baselines tbody tr")
    assert [row.get_attribute("data-baseline") for row in rows] == list(doc["baselines"])
    for row in rows:
        baseline = doc["baselines"][row.get_attribute("data-baseline")]
        step, multiple = (cell.text for cell in row.find_elements(By.TAG_NAME, "td"))
        assert _ms(step) == pytest.approx(baseline["step_time_ms"], rel=1e-3)
        assert float(multiple.rstrip("×")) == pytest.approx(
            baseline["step_time_ms"] / doc["step_time_ms"], abs=0.006
        )

    # What a user applies: a row per layer with its device, and the TensorFlow and JAX code.
    layer_rows = find_all(By.CSS_SELECTOR, "#layer-devices tbody tr")
    shown = {row.get_attribute("data-layer"): row.find_element(By.TAG_NAME, "td").text for row in layer_rows}
    assert shown == doc["layer_devices"]
    assert find_all(By.ID, "code-tensorflow") and find_all(By.ID, "code-jax")

    # The legend: every device of the cluster with its count of ops; its swatch is the device's colour.
    legend = {
        item.get_attribute("data-device"): item for item in find_all(By.CSS_SELECTOR, "#device-legend li")
    }
    assert list(legend) == devices
    counts = Counter(placement)
    for name, item in legend.items():
        n = counts[name]
        assert item.text == f"{name} ({n} op{'' if n == 1 else 's'})"
    swatch = {
        name: _rgb(item.find_element(By.CSS_SELECTOR, ".swatch").value_of_css_property("background-color"))
        for name, item in legend.items()
    }
    assert len(set(swatch.values())) == len(devices)  # a colour of its own per device

    # The graph: a node per op, filled with the colour of its device; as many colours as devices used.
    fills = driver.execute_script(
        "return [...document.querySelectorAll('#placement-graph svg circle.graph-op')]"
        ".map((c) => [Number(c.dataset.op), getComputedStyle(c).fill]);"
    )
    assert sorted(op for op, _ in fills) == list(range(len(ops)))
    colours = {op: _rgb(fill) for op, fill in fills}
    assert len(set(colours.values())) == len(used)
    assert all(colours[op] == swatch[placement[op]] for op in colours)
    assert find(By.ID, "graph-note").text == f"({len(ops)} ops)"

    # The timelines, learned and expert on one scale: a row per device; each op's forward and backward
    # run is a bar in its device's row and colour (ops with no work take no time and draw no bar).
    charts = find_all(By.CSS_SELECTOR, "#timelines svg[data-timeline]")
    assert [chart.get_attribute("data-timeline") for chart in charts] == ["learned", "expert"]
    for chart in charts:
        line = doc["timelines"][chart.get_attribute("data-timeline")]
        lanes = chart.find_elements(By.CSS_SELECTOR, "g.lane-row")
        assert [lane.get_attribute("data-device") for lane in lanes] == devices
        assert [lane.find_element(By.CSS_SELECTOR, "text").text for lane in lanes] == devices
        for lane, row in zip(lanes, line["devices"], strict=True):
            bars = lane.find_elements(By.CSS_SELECTOR, "path.run")
            drawn = sum((bar.get_attribute("d") or "").count("M") for bar in bars)
            assert drawn == sum(1 for run in row["runs"] if run[3] > run[2])
            name = lane.get_attribute("data-device")
            assert all(_rgb(bar.value_of_css_property("fill")) == swatch[name] for bar in bars)
        title = chart.find_element(By.CSS_SELECTOR, ".timeline-title").text
        assert _ms(title.rsplit(" · ", 1)[1]) == pytest.approx(line["step_time_ms"], rel=1e-3)
    learned = charts[0].find_elements(By.CSS_SELECTOR, "g.lane-row")
    busy = {
        lane.get_attribute("data-device")
        for lane in learned
        if lane.find_elements(By.CSS_SELECTOR, "path.run")
    }
    assert busy == {placement[i] for i, op in enumerate(ops) if op["flops"] > 0}

    # Nothing went wrong on the way: no script error or failed request since the login page.
    assert [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    shot = screenshot(driver, "placement-page.png")
    assert shot.stat().st_size > 10_000
