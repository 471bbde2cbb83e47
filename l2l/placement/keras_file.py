"""Read an uploaded ``.keras`` file into a layer-level op graph, in a subprocess.

The API never imports Keras or TensorFlow: :func:`graph_from_keras_file` runs
``python -m l2l.placement.keras_file PATH --batch-size N`` with a time limit and reads the
graph's JSON from its output. The child loads the file with ``safe_mode=True`` (no Python
lambdas are deserialised) and ``compile=False``, and walks it with
:func:`l2l.placement.keras_graph.graph_from_keras` with ``unroll=False``: one op per layer
call, so a placement is a ``{layer name: device}`` map. Any failure is a
:class:`~l2l.placement.graph.GraphError` with a one-line reason that never quotes the file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

from l2l.placement.graph import GraphError, OpGraph

#: Seconds a child may take to load and walk a model.
PARSE_SECONDS = 300.0
_PREFIX = "L2L_GRAPH "
_ERROR = "L2L_ERROR "


def looks_like_keras(raw: bytes) -> bool:
    """A ``.keras`` file is a zip archive holding ``config.json``."""
    return raw[:4] == b"PK\x03\x04"


def graph_from_keras_file(path: Path, batch_size: int, *, timeout: float = PARSE_SECONDS) -> OpGraph:
    """The layer-level op graph of the ``.keras`` model at ``path`` (parsed in a child process)."""
    if batch_size < 1:
        raise GraphError("batch_size must be >= 1")
    try:
        with zipfile.ZipFile(path) as archive:
            if "config.json" not in archive.namelist():
                raise GraphError("the upload is a zip file but not a .keras model (no config.json)")
    except zipfile.BadZipFile:
        raise GraphError("the upload is not a .keras model (not a zip archive)") from None
    env = {**os.environ, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax"), "CUDA_VISIBLE_DEVICES": ""}
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH")])
    )
    try:
        done = subprocess.run(
            [sys.executable, "-m", "l2l.placement.keras_file", str(path), "--batch-size", str(batch_size)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise GraphError(f"reading the model took over {timeout:g} s; upload a smaller model") from None
    for line in done.stdout.splitlines():
        if line.startswith(_PREFIX):
            return OpGraph.from_json(line[len(_PREFIX) :])
        if line.startswith(_ERROR):
            raise GraphError(line[len(_ERROR) :])
    raise GraphError("the model could not be read (the reader stopped without an answer)")


def _read(path: str, batch_size: int) -> OpGraph:
    import keras

    from l2l.placement.keras_graph import graph_from_keras

    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # noqa: BLE001 - any loading failure is the upload's problem
        raise GraphError(
            f"keras could not load the model ({type(error).__name__}); save it with model.save('x.keras') "
            "using only built-in layers, or register its custom layers with the service"
        ) from None
    return graph_from_keras(model, batch_size, unroll=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    try:
        graph = _read(args.path, args.batch_size)
    except GraphError as error:
        print(_ERROR + str(error).splitlines()[0][:500], flush=True)
        return 1
    print(_PREFIX + json.dumps(graph.to_dict()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
