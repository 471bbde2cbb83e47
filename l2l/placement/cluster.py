"""Clusters to place on: devices (kind, speed, memory) and the links between them, as data.

A device's speed is its effective FLOP/s on the ops of a training step (a fraction of the
datasheet peak) plus a fixed overhead per op (kernel launch and framework dispatch); ops
that carry measured seconds for the device's kind use those instead (see calibration). Its
``memory_bandwidth`` times the optimizer update (Adam reads and writes every parameter's
weight, gradient and two moments: memory-bound work).

Links are shared resources, each one way, with a bandwidth and a latency; a *route* names
the links a copy from one device to another crosses. A copy holds every link of its route
from its start to its end, so two copies that share a link (a GPU's one PCIe port, a PCIe
switch's uplink) run one after the other, first come first served; a copy takes
``sum(route latencies) + bytes / min(route bandwidths)``. That is what makes "4 GPUs on
PCIe" differ from "4 GPUs with a private cable to every other GPU".

The ready-made topologies (:data:`PRESETS`) and where their numbers come from:

* ``4gpu-pcie`` (the setting of Mirhoseini et al. 2017): 4 x P100, each GPU on one PCIe 3.0
  x16 port (10 GB/s each way, what peer-to-peer copies reach), two GPUs per PCIe switch,
  the two switches joined through the CPU's root complex by one x16 uplink each; copies
  between GPUs behind different switches share those uplinks.
* ``4gpu-pcie+cpu``: the same plus the host CPU as a device, reached through the root complex.
* ``4gpu-nvlink``: 4 x V100 SXM2 fully connected by NVLink 2 (one quad of a DGX-1), each pair
  with its own links (2 x 25 GB/s each way between 0-3 and 1-2 ... as in the DGX-1V).
* ``8gpu-nvlink``: 8 x V100 in the DGX-1V hybrid cube-mesh: 1 or 2 NVLinks (25 GB/s each
  way each) to four peers; the other three peers only through PCIe switches, the CPUs and
  the inter-socket link (QPI, ~20 GB/s).
* ``8gpu-nvswitch``: 8 x V100 behind an NVSwitch (DGX-2 style): one 150 GB/s port each way
  per GPU into a non-blocking switch.
* ``1gpu+cpu``: one P100 and the host CPU over the GPU's PCIe x16 port.
* ``tpu-v3-8`` and ``cpu-4`` (virtual host devices) keep a private link per ordered pair:
  rough models, no contention.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
    #: Bytes/s the device's memory gives an elementwise kernel (times the optimizer update).
    memory_bandwidth: float = 5e11


@dataclass(frozen=True)
class Link:
    """One direction of a cable, port or switch uplink; copies that cross it take turns."""

    name: str
    #: Bytes per second.
    bandwidth: float
    #: Seconds a copy pays to cross it, whatever its size.
    latency: float = 0.0


@dataclass(frozen=True)
class Cluster:
    """Devices, one-way links, and for every ordered pair of distinct devices the links a copy crosses.

    ``routes[(i, j)]`` is a tuple of indices into ``links``. :attr:`bandwidth` and
    :attr:`latency` are the derived ``n x n`` matrices (a route's narrowest link and its
    summed latency), for display and for code that wants one number per pair.
    """

    name: str
    devices: tuple[Device, ...]
    links: tuple[Link, ...]
    routes: Mapping[tuple[int, int], tuple[int, ...]]
    bandwidth: np.ndarray = field(init=False, repr=False, compare=False)
    latency: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.devices)
        if n == 0:
            raise ClusterError("a cluster needs at least one device")
        names = [d.name for d in self.devices]
        if len(set(names)) != n:
            raise ClusterError(f"device names must be unique, got {names}")
        for device in self.devices:
            if (
                not device.flops > 0
                or not device.memory_bytes > 0
                or not device.op_overhead >= 0
                or not device.memory_bandwidth > 0
            ):
                raise ClusterError(
                    f"device {device.name!r}: flops, memory and memory_bandwidth must be > 0, "
                    "op_overhead >= 0"
                )
        for link in self.links:
            if not link.bandwidth > 0 or not link.latency >= 0:
                raise ClusterError(f"link {link.name!r} needs bandwidth > 0 and latency >= 0")
        routes = {(int(i), int(j)): tuple(int(k) for k in path) for (i, j), path in self.routes.items()}
        for i in range(n):
            for j in range(n):
                if i == j:
                    continue
                path = routes.get((i, j))
                if not path:
                    raise ClusterError(
                        f"no route from {names[i]!r} to {names[j]!r}: name the links it crosses"
                    )
                if any(not 0 <= k < len(self.links) for k in path) or len(set(path)) != len(path):
                    raise ClusterError(
                        f"route {names[i]!r} -> {names[j]!r} must name distinct links of the cluster"
                    )
        object.__setattr__(self, "routes", routes)
        bandwidth = np.full((n, n), np.inf)
        latency = np.zeros((n, n))
        for (i, j), path in routes.items():
            if i != j:
                bandwidth[i, j] = min(self.links[k].bandwidth for k in path)
                latency[i, j] = sum(self.links[k].latency for k in path)
        object.__setattr__(self, "bandwidth", bandwidth)
        object.__setattr__(self, "latency", latency)

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

    def route_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR form of the routes for compiled code: ``ptr`` (n*n+1) and ``links``; pair i*n+j."""
        n = len(self.devices)
        ptr = np.zeros(n * n + 1, dtype=np.int64)
        flat: list[int] = []
        for i in range(n):
            for j in range(n):
                if i != j:
                    flat.extend(self.routes[(i, j)])
                ptr[i * n + j + 1] = len(flat)
        return ptr, np.array(flat, dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        names = self.device_names
        return {
            "name": self.name,
            "devices": [
                {
                    "name": d.name,
                    "kind": d.kind,
                    "flops": d.flops,
                    "memory_bytes": d.memory_bytes,
                    "op_overhead": d.op_overhead,
                    "memory_bandwidth": d.memory_bandwidth,
                }
                for d in self.devices
            ],
            "links": [{"name": k.name, "bandwidth": k.bandwidth, "latency": k.latency} for k in self.links],
            "routes": [
                {"from": names[i], "to": names[j], "links": [self.links[k].name for k in path]}
                for (i, j), path in sorted(self.routes.items())
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cluster:
        """The shape of :meth:`to_dict`, or the older ``bandwidth``/``latency`` form.

        With ``links`` and ``routes``: routes name devices and links by name. Without them,
        ``bandwidth`` and ``latency`` (one number, or an n x n matrix) give every ordered
        pair of devices a private link of its own (no contention).
        """
        if not isinstance(data, Mapping):
            raise ClusterError("a cluster is a JSON object {name, devices, links, routes}")
        try:
            devices = tuple(
                Device(
                    name=str(d["name"]),
                    kind=str(d["kind"]),
                    flops=float(d["flops"]),
                    memory_bytes=int(d["memory_bytes"]),
                    op_overhead=float(d.get("op_overhead", 0.0)),
                    memory_bandwidth=float(d.get("memory_bandwidth", 5e11)),
                )
                for d in data["devices"]
            )
            name = str(data.get("name", "custom"))
            if "links" not in data:
                n = len(devices)
                return private_links_cluster(
                    name, list(devices), _matrix(data["bandwidth"], n), _matrix(data.get("latency", 0.0), n)
                )
            links = tuple(
                Link(str(k["name"]), float(k["bandwidth"]), float(k.get("latency", 0.0)))
                for k in data["links"]
            )
            link_index = {k.name: i for i, k in enumerate(links)}
            device_index = {d.name: i for i, d in enumerate(devices)}
            if len(link_index) != len(links):
                raise ClusterError("link names must be unique")
            routes: dict[tuple[int, int], tuple[int, ...]] = {}
            for route in data["routes"]:
                for end in ("from", "to"):
                    if route[end] not in device_index:
                        raise ClusterError(f"a route's {end!r} names {route[end]!r}, which is not a device")
                unknown = [k for k in route["links"] if k not in link_index]
                if unknown:
                    raise ClusterError(f"a route names link {unknown[0]!r}, which is not in 'links'")
                routes[(device_index[route["from"]], device_index[route["to"]])] = tuple(
                    link_index[k] for k in route["links"]
                )
        except ClusterError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ClusterError(
                "a cluster is {name, devices: [{name, kind, flops, memory_bytes, op_overhead}], "
                "links: [{name, bandwidth, latency}], routes: [{from, to, links}]} "
                f"(or bandwidth and latency instead of links and routes): missing or bad {exc}"
            ) from None
        return cls(name, devices, links, routes)


def _matrix(value: Any, n: int) -> np.ndarray:
    matrix = np.full((n, n), float(value)) if np.isscalar(value) else np.asarray(value, dtype=float)
    if matrix.shape != (n, n):
        raise ClusterError(
            f"bandwidth and latency must be one number or a {n}x{n} matrix, got shape {matrix.shape}"
        )
    return matrix.copy()


def private_links_cluster(
    name: str, devices: Sequence[Device], bandwidth: np.ndarray, latency: np.ndarray
) -> Cluster:
    """Every ordered pair of devices gets a link of its own (no contention between pairs)."""
    n = len(devices)
    links: list[Link] = []
    routes: dict[tuple[int, int], tuple[int, ...]] = {}
    for i in range(n):
        for j in range(n):
            if i != j:
                routes[(i, j)] = (len(links),)
                links.append(
                    Link(
                        f"{devices[i].name}->{devices[j].name}", float(bandwidth[i, j]), float(latency[i, j])
                    )
                )
    return Cluster(name, tuple(devices), tuple(links), routes)


def uniform_cluster(name: str, devices: list[Device], bandwidth: float, latency: float) -> Cluster:
    """Private links of one bandwidth and latency between every ordered pair (virtual devices)."""
    n = len(devices)
    return private_links_cluster(name, devices, np.full((n, n), bandwidth), np.full((n, n), latency))


class _Topology:
    """Builds a cluster link by link: named one-way links and routes through them."""

    def __init__(self, devices: Sequence[Device]) -> None:
        self.devices = list(devices)
        self.links: list[Link] = []
        self.index: dict[str, int] = {}
        self.routes: dict[tuple[int, int], tuple[int, ...]] = {}

    def link(self, name: str, bandwidth: float, latency: float) -> None:
        self.index[name] = len(self.links)
        self.links.append(Link(name, bandwidth, latency))

    def duplex(self, name: str, bandwidth: float, latency: float) -> None:
        """Two one-way links, ``name.up`` and ``name.down`` (a full-duplex port)."""
        self.link(f"{name}.up", bandwidth, latency)
        self.link(f"{name}.down", bandwidth, latency)

    def route(self, source: int, target: int, names: Sequence[str]) -> None:
        self.routes[(source, target)] = tuple(self.index[k] for k in names)

    def build(self, name: str) -> Cluster:
        return Cluster(name, tuple(self.devices), tuple(self.links), self.routes)


def _gpus(
    count: int, kind: str, flops: float, memory_gib: float, overhead: float, memory_bw: float
) -> list[Device]:
    return [Device(f"gpu:{i}", kind, flops, int(memory_gib * GiB), overhead, memory_bw) for i in range(count)]


def _p100s(count: int) -> list[Device]:
    # P100: 9.3 TFLOP/s fp32 peak, ~50% on training ops; 732 GB/s HBM2, ~75% reached by kernels
    return _gpus(count, "p100", 4.5e12, 16, 10e-6, 5.5e11)


def _v100s(count: int) -> list[Device]:
    # V100 SXM2: 15.7 TFLOP/s fp32 peak, ~50%; 900 GB/s HBM2, ~75%
    return _gpus(count, "v100", 8e12, 32, 8e-6, 6.75e11)


def _host_cpu() -> Device:
    # two-socket Xeon: ~200 GFLOP/s on training ops, ~60 GB/s of memory bandwidth
    return Device("cpu:0", "cpu", 2e11, 256 * GiB, 20e-6, 6e10)


# PCIe 3.0 x16: 15.75 GB/s raw each way; peer-to-peer copies reach ~10 GB/s. Latency per hop
# includes the framework's send/receive, not only the wire.
_PCIE_BW, _PCIE_LATENCY = 10e9, 10e-6
_NVLINK_BW, _NVLINK_LATENCY = 25e9, 5e-6  # NVLink 2: 25 GB/s each way per link


def _pcie_tree(gpus: Sequence[Device], per_switch: int, host: bool) -> Cluster:
    """GPUs on their own x16 ports, ``per_switch`` GPUs per PCIe switch, switches on the root complex."""
    devices = [*gpus, _host_cpu()] if host else list(gpus)
    topology = _Topology(devices)
    n_gpus = len(gpus)
    for g in range(n_gpus):
        topology.duplex(f"gpu{g}.port", _PCIE_BW, _PCIE_LATENCY)
    switches = (n_gpus + per_switch - 1) // per_switch
    for s in range(switches):
        topology.duplex(f"switch{s}.uplink", _PCIE_BW, 2e-6)

    def path_to_root(g: int) -> list[str]:
        return [f"gpu{g}.port.up", f"switch{g // per_switch}.uplink.up"]

    def path_from_root(g: int) -> list[str]:
        return [f"switch{g // per_switch}.uplink.down", f"gpu{g}.port.down"]

    for a in range(n_gpus):
        for b in range(n_gpus):
            if a == b:
                continue
            if a // per_switch == b // per_switch:
                topology.route(a, b, [f"gpu{a}.port.up", f"gpu{b}.port.down"])
            else:
                topology.route(a, b, path_to_root(a) + path_from_root(b))
    if host:
        cpu = n_gpus
        for g in range(n_gpus):
            topology.route(g, cpu, path_to_root(g))
            topology.route(cpu, g, path_from_root(g))
    return topology.build("")


#: NVLinks between pairs of V100s in a DGX-1V (hybrid cube-mesh), as ``nvidia-smi topo -m`` shows.
DGX1_NVLINKS: dict[tuple[int, int], int] = {
    (0, 1): 1, (0, 2): 1, (0, 3): 2, (0, 4): 2,
    (1, 2): 2, (1, 3): 1, (1, 5): 2,
    (2, 3): 2, (2, 6): 1,
    (3, 7): 1,
    (4, 5): 1, (4, 6): 1, (4, 7): 2,
    (5, 6): 2, (5, 7): 1,
    (6, 7): 2,
}  # fmt: skip


def _nvlink_mesh(count: int) -> Cluster:
    """The DGX-1V cube-mesh (or its first quad): NVLink where cabled, else PCIe + CPUs + QPI."""
    gpus = _v100s(count)
    topology = _Topology(gpus)
    for (a, b), lanes in DGX1_NVLINKS.items():
        if a < count and b < count:
            topology.link(f"nvlink{a}->{b}", lanes * _NVLINK_BW, _NVLINK_LATENCY)
            topology.link(f"nvlink{b}->{a}", lanes * _NVLINK_BW, _NVLINK_LATENCY)
    for g in range(count):
        topology.duplex(f"gpu{g}.port", _PCIE_BW, _PCIE_LATENCY)
    for s in range((count + 1) // 2):
        topology.duplex(f"switch{s}.uplink", _PCIE_BW, 2e-6)
    topology.link("qpi0->1", 20e9, 5e-6)
    topology.link("qpi1->0", 20e9, 5e-6)
    for a in range(count):
        for b in range(count):
            if a == b:
                continue
            if f"nvlink{a}->{b}" in topology.index:
                topology.route(a, b, [f"nvlink{a}->{b}"])
                continue
            path = [f"gpu{a}.port.up", f"switch{a // 2}.uplink.up"]
            socket_a, socket_b = a // 4, b // 4
            if socket_a != socket_b:
                path.append(f"qpi{socket_a}->{socket_b}")
            topology.route(a, b, [*path, f"switch{b // 2}.uplink.down", f"gpu{b}.port.down"])
    return topology.build("")


def _nvswitch(count: int) -> Cluster:
    gpus = _v100s(count)
    topology = _Topology(gpus)
    for g in range(count):
        # 6 NVLinks per GPU into the switch: 150 GB/s each way; the switch itself is non-blocking
        topology.duplex(f"gpu{g}.nvswitch", 6 * _NVLINK_BW, 3e-6)
    for a in range(count):
        for b in range(count):
            if a != b:
                topology.route(a, b, [f"gpu{a}.nvswitch.up", f"gpu{b}.nvswitch.down"])
    return topology.build("")


def _named(cluster: Cluster, name: str) -> Cluster:
    return Cluster(name, cluster.devices, cluster.links, cluster.routes)


def _presets() -> dict[str, Cluster]:
    # TPU v3: ~30 TFLOP/s per core effective in bf16; inter-core links ~70 GB/s.
    tpu = [Device(f"tpu:{i}", "tpu-v3", 3e13, 16 * GiB, 5e-6, 6e11) for i in range(8)]
    # Virtual host devices (XLA_FLAGS=--xla_force_host_platform_device_count=4): a memcpy apart.
    cpus = [Device(f"cpu:{i}", "cpu", 2e10, 8 * GiB, 30e-6, 1e10) for i in range(4)]
    clusters = [
        _named(_pcie_tree(_p100s(4), per_switch=2, host=False), "4gpu-pcie"),
        _named(_pcie_tree(_p100s(4), per_switch=2, host=True), "4gpu-pcie+cpu"),
        _named(_nvlink_mesh(4), "4gpu-nvlink"),
        _named(_nvlink_mesh(8), "8gpu-nvlink"),
        _named(_nvswitch(8), "8gpu-nvswitch"),
        _named(_pcie_tree(_p100s(1), per_switch=1, host=True), "1gpu+cpu"),
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
