"""``l2l bench gpu-packing``: trials per hour on one GPU, one trial at a time against packed.

For a GPU machine with JAX (CUDA) and neither TensorFlow nor Ray: trials of the
``nb201_cell`` space train under Keras' JAX backend on CIFAR-sized generated data
(32x32x3 images, 10 classes, a class-dependent pattern under noise, so accuracy rises
above chance). Two modes, each the same ``trials`` random cells:

* ``alone``: one worker process trains the trials one after another (the GPU to itself);
* ``packed``: ``processes`` worker processes side by side, each with its share of the GPU's
  memory (``XLA_PYTHON_CLIENT_MEM_FRACTION``), the number coming from the packing
  arithmetic of :mod:`l2l.worker.packing` (the model's predicted memory over the device's)
  unless given.

Each worker process is warm (one JAX import, many trials), as l2l's Ray workers are; every
worker's first trial (JIT compilation included) counts. Reported per mode: wall seconds,
trials per hour, training images per second, and the GPU's busy percentage sampled with
``nvidia-smi`` every half second (None where there is no nvidia-smi, e.g. a CPU run).

Run it directly on the GPU machine: ``python -m l2l.bench.gpu_packing --out gpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

#: A CIFAR-10-sized training set: 50,000 images of 32x32x3, 10 classes.
CIFAR_SHAPE = (32, 32, 3)
CLASSES = 10


def generated_images(count: int, seed: int) -> tuple[Any, Any]:
    """``count`` images shaped like CIFAR-10 with labels: each class adds its own fixed
    pattern to Gaussian noise, so a model can learn it and nothing is downloaded."""
    import numpy as np

    rng = np.random.default_rng(seed)
    patterns = rng.normal(0, 1, size=(CLASSES, *CIFAR_SHAPE)).astype("float32")
    labels = rng.integers(0, CLASSES, size=count)
    images = rng.normal(0, 1, size=(count, *CIFAR_SHAPE)).astype("float32") + 0.5 * patterns[labels]
    return images, labels.astype("int32")


def train_trials(
    trials: int, seed: int, images: int, epochs: int, batch_size: int, channels: int
) -> list[dict[str, Any]]:
    """Train ``trials`` random nb201 cells in this process; one record per trial."""
    import keras

    from search_spaces import get_space
    from search_spaces.spec import DataInfo

    space = get_space({"name": "nb201_cell", "settings": {"channels": channels}})
    info = DataInfo(CIFAR_SHAPE, CLASSES, "classification", "image")
    x, y = generated_images(images, seed=1234)
    rng = random.Random(seed)
    records = []
    for _ in range(trials):
        params = space.sample(rng)
        keras.utils.set_random_seed(rng.randrange(2**31))
        model = space.load_builder()(params, info, space.settings)
        started = time.perf_counter()
        history = model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, validation_split=0.1)
        seconds = time.perf_counter() - started
        trained = int(len(x) * 0.9) * epochs
        records.append(
            {
                "seconds": seconds,
                "images_per_second": trained / seconds,
                "val_accuracy": float(history.history["val_accuracy"][-1]),
                "parameters": model.count_params(),
                "backend": keras.backend.backend(),
            }
        )
    return records


def predicted_processes(images: int, batch_size: int, channels: int, device_gb: float) -> int:
    """How many trials share one GPU by the packing arithmetic, for the space's largest cell
    (every edge a 3x3 convolution), at ``batch_size``."""
    from l2l.worker.packing import gpu_fraction, predict_trial_memory, trials_per_gpu
    from search_spaces import get_space
    from search_spaces.spec import DataInfo

    space = get_space({"name": "nb201_cell", "settings": {"channels": channels}})
    largest = {decision.name: "nor_conv_3x3" for decision in space.decisions}
    info = DataInfo(CIFAR_SHAPE, CLASSES, "classification", "image")
    needed = predict_trial_memory(space, largest, info, batch_size).total_bytes
    return trials_per_gpu(gpu_fraction(needed, int(device_gb * 2**30)))


class GpuBusy:
    """Samples ``nvidia-smi``'s utilisation every half second while running."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.available = shutil.which("nvidia-smi") is not None

    def __enter__(self) -> GpuBusy:
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.available:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            done = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                check=False,
            )
            values = [float(v) for v in done.stdout.split() if v.strip().replace(".", "", 1).isdigit()]
            if values:
                self.samples.append(statistics.mean(values))

    @property
    def mean(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


def run_mode(processes: int, trials: int, args: argparse.Namespace) -> dict[str, Any]:
    """``trials`` trials spread over ``processes`` warm worker processes side by side."""
    shares = [trials // processes + (1 if i < trials % processes else 0) for i in range(processes)]
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    if processes > 1:
        env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 / processes:.3f}"
    started = time.perf_counter()
    with GpuBusy() as busy:
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "l2l.bench.gpu_packing",
                    "--worker",
                    "--trials",
                    str(share),
                    "--seed",
                    str(args.seed * 1000 + i),
                    "--images",
                    str(args.images),
                    "--epochs",
                    str(args.epochs),
                    "--batch-size",
                    str(args.batch_size),
                    "--channels",
                    str(args.channels),
                ],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for i, share in enumerate(shares)
            if share
        ]
        records: list[dict[str, Any]] = []
        for worker in workers:
            out, _ = worker.communicate()
            if worker.returncode:
                raise RuntimeError(f"a worker process exited with {worker.returncode}")
            records += json.loads(out.strip().splitlines()[-1])
    wall = time.perf_counter() - started
    trained = sum(r["images_per_second"] * r["seconds"] for r in records)
    return {
        "processes": processes,
        "trials": len(records),
        "wall_seconds": wall,
        "trials_per_hour": len(records) * 3600 / wall,
        "images_per_second": trained / wall,
        "gpu_busy_percent": busy.mean,
        "mean_val_accuracy": statistics.mean(r["val_accuracy"] for r in records),
        "backend": records[0]["backend"] if records else None,
    }


def format_report(document: dict[str, Any]) -> str:
    lines = [
        "| mode | processes | trials | wall s | trials/hour | images/s | GPU busy % |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, mode in document["modes"].items():
        busy = "n/a" if mode["gpu_busy_percent"] is None else f"{mode['gpu_busy_percent']:.0f}"
        lines.append(
            f"| {name} | {mode['processes']} | {mode['trials']} | {mode['wall_seconds']:.1f} | "
            f"{mode['trials_per_hour']:.0f} | {mode['images_per_second']:.0f} | {busy} |"
        )
    alone, packed = document["modes"]["alone"], document["modes"]["packed"]
    lines.append(
        f"\npacked / alone trials per hour: {packed['trials_per_hour'] / alone['trials_per_hour']:.2f}x"
    )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, default=16, help="trials per mode (default 16)")
    parser.add_argument(
        "--images", type=int, default=50_000, help="generated training images (default 50,000)"
    )
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--channels", type=int, default=16, help="nb201_cell channels (default 16)")
    parser.add_argument("--processes", type=int, help="packed processes (default: from predicted memory)")
    parser.add_argument(
        "--device-gb", type=float, default=80.0, help="GPU memory for the prediction (default 80)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="results JSON file")


def run(args: argparse.Namespace) -> int:
    processes = args.processes or predicted_processes(
        args.images, args.batch_size, args.channels, args.device_gb
    )
    document: dict[str, Any] = {
        "protocol": {k: v for k, v in vars(args).items() if k != "worker"},
        "modes": {},
    }
    document["protocol"]["packed_processes"] = processes
    for name, count in (("alone", 1), ("packed", processes)):
        print(f"{name}: {args.trials} trials in {count} process(es)", flush=True)
        document["modes"][name] = run_mode(count, args.trials, args)
        if args.out:  # after each mode: a run cut short by its time limit keeps what it measured
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    print(format_report(document))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m l2l.bench.gpu_packing", description=__doc__.splitlines()[0]
    )
    add_arguments(parser)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        records = train_trials(
            args.trials, args.seed, args.images, args.epochs, args.batch_size, args.channels
        )
        print(json.dumps(records))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
