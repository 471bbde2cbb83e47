"""Clusters to place on: devices (kind, speed, memory) and the links between them.

A device's speed is its effective FLOP/s on the ops of a training step (a fraction of the
datasheet peak) plus a fixed overhead per op (kernel launch and framework dispatch); ops
that carry measured seconds for the device's kind use those instead (see calibration).
Every ordered pair of devices is a link with its own bandwidth and latency, and each link
carries one transfer at a time (first come, first served).

The ready-made clusters are rough models of common machines; the numbers are datasheet
figures scaled to what a training step gets, and say so where they come from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

GiB = 1024**3


class ClusterError(ValueError):
    """The cluster description is invalid; the message says what to fix."""


@dataclass(frozen=True)
class Device:
    name: str
    kind: str
    #: Effective FLOP/s on training ops.
    flops: float
    memory_bytes: int
    #: Seconds added to every op run on the device (launch and dispatch).
    op_overhead: float = 0.0


@dataclass(frozen=True)
class Cluster:
    name: str
    devices: tuple[Device, ...]
    #: bandwidth[i, j] in bytes/s and latency[i, j] in seconds from device i to device j.
    bandwidth: np.ndarray
    latency: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.devices)
        if n == 0:
            raise ClusterError("a cluster needs at least one device")
        names = [d.name for d in self.devices]
        if len(set(names)) != n:
            raise ClusterError(f"device names must be unique, got {names}")
        for device in self.devices:
            if not device.flops > 0 or not device.memory_bytes > 0 or not device.op_overhead >= 0:
                raise ClusterError(f"device {device.name!r}: flops and memory must be > 0, op_overhead >= 0")
        for label, matrix in (("bandwidth", self.bandwidth), ("latency", self.latency)):
            if matrix.shape != (n, n):
                raise ClusterError(f"{label} must be a {n}x{n} matrix, got shape {matrix.shape}")
        off_diagonal = ~np.eye(n, dtype=bool)
        if n > 1 and (not np.all(self.bandwidth[off_diagonal] > 0) or not np.all(self.latency >= 0)):
            raise ClusterError("every link needs bandwidth > 0 and latency >= 0")

    def __len__(self) -> int:
        return len(self.devices)

    @property
    def kinds(self) -> list[str]:
        return list(dict.fromkeys(d.kind for d in self.devices))

    @property
    def device_names(self) -> list[str]:
        return [d.name for d in self.devices]

    def accelerators(self) -> list[int]:
        """Indices of the devices that are not CPUs (all of them on a CPU-only cluster)."""
        found = [i for i, d in enumerate(self.devices) if d.kind != "cpu"]
        return found or list(range(len(self.devices)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "devices": [
                {
                    "name": d.name,
                    "kind": d.kind,
                    "flops": d.flops,
                    "memory_bytes": d.memory_bytes,
                    "op_overhead": d.op_overhead,
                }
                for d in self.devices
            ],
            # the diagonal (a device to itself) is never used; 0 keeps the JSON standard (no Infinity)
            "bandwidth": np.where(np.eye(len(self.devices), dtype=bool), 0.0, self.bandwidth).tolist(),
            "latency": self.latency.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cluster:
        """The shape of :meth:`to_dict`; ``bandwidth``/``latency`` may be one number for every link."""
        try:
            devices = tuple(
                Device(
                    name=str(d["name"]),
                    kind=str(d["kind"]),
                    flops=float(d["flops"]),
                    memory_bytes=int(d["memory_bytes"]),
                    op_overhead=float(d.get("op_overhead", 0.0)),
                )
                for d in data["devices"]
            )
            n = len(devices)
            bandwidth = _matrix(data["bandwidth"], n)
            latency = _matrix(data.get("latency", 0.0), n)
        except (KeyError, TypeError, ValueError) as exc:
            raise ClusterError(
                f"a cluster is {{name, devices: [{{name, kind, flops, memory_bytes, op_overhead}}], "
                f"bandwidth, latency}}: {exc}"
            ) from None
        return cls(str(data.get("name", "custom")), devices, bandwidth, latency)


def _matrix(value: Any, n: int) -> np.ndarray:
    matrix = np.full((n, n), float(value)) if np.isscalar(value) else np.asarray(value, dtype=float)
    matrix = matrix.copy()
    np.fill_diagonal(matrix, 0.0)
    return matrix


def uniform_cluster(name: str, devices: list[Device], bandwidth: float, latency: float) -> Cluster:
    n = len(devices)
    bw = np.full((n, n), bandwidth)
    np.fill_diagonal(bw, np.inf)
    lat = np.full((n, n), latency)
    np.fill_diagonal(lat, 0.0)
    return Cluster(name, tuple(devices), bw, lat)


def _gpus(count: int, kind: str, flops: float, memory_gib: float, overhead: float) -> list[Device]:
    return [Device(f"gpu:{i}", kind, flops, int(memory_gib * GiB), overhead) for i in range(count)]


def _with_host(
    name: str, gpus: list[Device], gpu_bandwidth: float, host_bandwidth: float, latency: float
) -> Cluster:
    host = Device("cpu:0", "cpu", 2e11, 256 * GiB, 20e-6)
    devices = [*gpus, host]
    n = len(devices)
    bw = np.full((n, n), gpu_bandwidth)
    bw[-1, :] = bw[:, -1] = host_bandwidth
    np.fill_diagonal(bw, np.inf)
    lat = np.full((n, n), latency)
    np.fill_diagonal(lat, 0.0)
    return Cluster(name, tuple(devices), bw, lat)


def _presets() -> dict[str, Cluster]:
    # P100: 9.3 TFLOP/s fp32 peak, ~50% on training ops; PCIe 3.0 x16 peer-to-peer ~10 GB/s.
    p100 = _gpus(4, "p100", 4.5e12, 16, 10e-6)
    # V100 SXM2: 15.7 TFLOP/s fp32 peak; NVLink 2 between each pair ~40 GB/s one way.
    v100 = _gpus(4, "v100", 8e12, 32, 8e-6)
    # TPU v3: ~30 TFLOP/s per core effective in bf16; inter-core links ~70 GB/s.
    tpu = [Device(f"tpu:{i}", "tpu-v3", 3e13, 16 * GiB, 5e-6) for i in range(8)]
    # Virtual host devices (XLA_FLAGS=--xla_force_host_platform_device_count=4): a memcpy apart.
    cpus = [Device(f"cpu:{i}", "cpu", 2e10, 8 * GiB, 30e-6) for i in range(4)]
    clusters = [
        uniform_cluster("4gpu-pcie", p100, 10e9, 10e-6),
        uniform_cluster("4gpu-nvlink", v100, 40e9, 5e-6),
        _with_host("4gpu-pcie+cpu", _gpus(4, "p100", 4.5e12, 16, 10e-6), 10e9, 10e9, 10e-6),
        uniform_cluster("8gpu-nvlink", _gpus(8, "v100", 8e12, 32, 8e-6), 40e9, 5e-6),
        uniform_cluster("tpu-v3-8", tpu, 70e9, 2e-6),
        uniform_cluster("cpu-4", cpus, 5e9, 20e-6),
    ]
    return {cluster.name: cluster for cluster in clusters}


PRESETS: dict[str, Cluster] = _presets()


def get_cluster(name_or_spec: str | Mapping[str, Any]) -> Cluster:
    """A ready-made cluster by name, or one described as in :meth:`Cluster.from_dict`."""
    if isinstance(name_or_spec, str):
        try:
            return PRESETS[name_or_spec]
        except KeyError:
            raise ClusterError(
                f"unknown cluster {name_or_spec!r}; ready-made ones: {', '.join(sorted(PRESETS))}"
            ) from None
    return Cluster.from_dict(name_or_spec)
