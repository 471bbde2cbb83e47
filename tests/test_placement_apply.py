"""A placement a user can apply: a .keras file read in a subprocess, {layer: device}, and the
generated TensorFlow and JAX code run for real on virtual CPU devices with that placement."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from l2l.placement.apply import jax_code, layer_devices, split_layers, tensorflow_code
from l2l.placement.baselines import round_robin
from l2l.placement.cluster import get_cluster
from l2l.placement.graph import GraphError
from l2l.placement.keras_file import graph_from_keras_file

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["hidden_a", "hidden_b", "left", "right", "join", "out"]


def save_towers(path: Path) -> Path:
    """A small two-branch functional model saved as .keras (built in a child: any backend)."""
    script = f"""
import keras
x = keras.Input((12,), name="features")
h = keras.layers.Dense(16, activation="relu", name="hidden_a")(x)
h = keras.layers.Dense(16, activation="relu", name="hidden_b")(h)
a = keras.layers.Dense(8, name="left")(h)
b = keras.layers.Dense(8, name="right")(h)
j = keras.layers.Concatenate(name="join")([a, b])
y = keras.layers.Dense(3, name="out")(j)
keras.Model(x, y, name="towers").save({str(path)!r})
"""
    _child(script, backend="jax")
    return path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return save_towers(tmp_path_factory.mktemp("model") / "towers.keras")


def _child(script: str, backend: str, devices: int = 4) -> dict:
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "PYTHONPATH": str(ROOT),
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "CUDA_VISIBLE_DEVICES": "",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(lines[-1][len("RESULT ") :]) if lines else {}


def test_a_keras_file_becomes_a_layer_level_graph_and_a_layer_map(model_file):
    graph = graph_from_keras_file(model_file, batch_size=16)
    assert [op.layer for op in graph.ops if op.kind not in ("Input", "InputLayer")] == LAYERS
    cluster = get_cluster("4gpu-pcie")
    placement = round_robin(graph, cluster)
    mapping = layer_devices(graph, placement, cluster.device_names)
    assert set(LAYERS) <= set(mapping) and set(mapping.values()) <= set(cluster.device_names)
    assert split_layers(graph, placement) == []
    assert len(set(mapping[name] for name in LAYERS)) == 4  # round robin uses every GPU


def test_a_file_that_is_not_a_keras_model_is_refused_in_one_line(tmp_path):
    bogus = tmp_path / "x.keras"
    bogus.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(GraphError, match="not a .keras model"):
        graph_from_keras_file(bogus, batch_size=4)


def _plan(model_file: Path) -> dict[str, str]:
    graph = graph_from_keras_file(model_file, batch_size=8)
    cluster = get_cluster("4gpu-pcie")
    return layer_devices(graph, round_robin(graph, cluster), cluster.device_names)


def test_tensorflow_code_builds_each_layer_under_its_device_and_trains(model_file, tmp_path):
    mapping = _plan(model_file)
    (tmp_path / "placed_tf.py").write_text(tensorflow_code(mapping, str(model_file)))
    result = _child(
        f"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 4)
sys.path.insert(0, {str(tmp_path)!r})
import placed_tf
device_map = {{f"gpu:{{i}}": f"cpu:{{i}}" for i in range(4)}}
model, history = placed_tf.main({str(model_file)!r}, device_map=device_map, steps=2)
where = {{
    layer.name: sorted({{v.value.device for v in layer.weights}}) for layer in model.layers if layer.weights
}}
print("RESULT " + json.dumps({{"where": where, "loss": history.history["loss"]}}))
""",
        backend="tensorflow",
    )
    for layer, devices in result["where"].items():
        expected = "CPU:" + mapping[layer].split(":")[1]
        assert devices and all(d.endswith(expected) for d in devices), (layer, devices, expected)
    assert len(result["loss"]) == 2 and all(np.isfinite(result["loss"]))


def test_jax_code_puts_each_layers_parameters_on_its_device_and_runs_steps(model_file, tmp_path):
    mapping = _plan(model_file)
    (tmp_path / "placed_jax.py").write_text(jax_code(mapping, str(model_file)))
    result = _child(
        f"""
import json, sys
import jax, numpy as np
sys.path.insert(0, {str(tmp_path)!r})
import placed_jax
device_map = {{f"gpu:{{i}}": f"cpu:{{i}}" for i in range(4)}}
model = placed_jax.main({str(model_file)!r}, device_map=device_map, steps=2)
where = {{
    name: sorted({{str(d) for p in placed.params for d in p.devices()}})
    for name, placed in model.layers.items()
    if placed.params
}}
print("RESULT " + json.dumps({{"where": where, "devices": [str(d) for d in model.devices]}}))
""",
        backend="jax",
    )
    names = sorted(set(mapping.values()))
    for layer, devices in result["where"].items():
        expected = result["devices"][names.index(mapping[layer])]
        assert devices == [expected], (layer, devices, expected)
    assert len(set(result["devices"])) == 4
