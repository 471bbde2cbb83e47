"""How much accelerator memory a trial needs, and how many trials share one GPU.

A trial's training memory is predicted from its built model: the weights with their
gradients and optimizer slots, plus every layer's output kept for the backward pass at
the trial's batch size, plus a fixed allowance for the framework's own buffers. The
prediction sets what fraction of a GPU the trial asks Ray for (``{"GPU": f}``), rounded
up to 1/2, 1/4 or 1/8 so that trials of one job pack into few shapes and a GPU is
never split into more than :data:`MAX_TRIALS_PER_GPU` slices.

A packed trial that still runs out of memory is retried alone (``GPU: 1``) by the job
loop; :func:`is_out_of_memory` tells such an error from others.

The arithmetic needs no framework; only :func:`model_memory` and
:func:`predict_trial_memory` import Keras (they build the model).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Bytes of one float32 value.
FLOAT_BYTES = 4
#: Values kept per weight while training with Adam: the weight, its gradient, two moments.
VALUES_PER_WEIGHT = 4
#: Each layer output is kept for the backward pass and gets a gradient of the same size.
VALUES_PER_ACTIVATION = 2
#: The framework's own buffers, compiled kernels and workspace: a fixed allowance per trial.
FRAMEWORK_BYTES = 512 * 2**20
#: Head room on the prediction: allocators fragment, XLA fuses differently than we count.
SAFETY = 1.25
#: A GPU is split into at most this many trials (more would fight for its compute, not memory).
MAX_TRIALS_PER_GPU = 8

_OUT_OF_MEMORY_SIGNS = (
    "resource_exhausted",
    "resourceexhaustederror",
    "out of memory",
    "outofmemoryerror",
    "oom when allocating",
    "failed to allocate",
)


@dataclass(frozen=True)
class MemoryEstimate:
    """A trial's predicted training memory, in bytes."""

    parameters: int
    #: Bytes of weights, gradients and optimizer slots.
    weight_bytes: int
    #: Bytes of the activations kept for the backward pass, at the batch size.
    activation_bytes: int
    framework_bytes: int = FRAMEWORK_BYTES

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.activation_bytes + self.framework_bytes


def estimate_memory(parameters: int, activation_values_per_example: int, batch_size: int) -> MemoryEstimate:
    """The memory of training a model with ``parameters`` weights whose layers output
    ``activation_values_per_example`` values per example, at ``batch_size``."""
    if parameters < 0 or activation_values_per_example < 0 or batch_size < 1:
        raise ValueError("parameters and activations must be >= 0 and the batch size >= 1")
    return MemoryEstimate(
        parameters=parameters,
        weight_bytes=parameters * VALUES_PER_WEIGHT * FLOAT_BYTES,
        activation_bytes=activation_values_per_example * batch_size * VALUES_PER_ACTIVATION * FLOAT_BYTES,
    )


def gpu_fraction(needed_bytes: int, device_bytes: int) -> float:
    """The share of one GPU a trial needing ``needed_bytes`` asks for: ``needed * SAFETY``
    over the device's memory, rounded up to 1/8, 1/4, 1/2 or 1 (1 if it does not fit in half)."""
    if device_bytes <= 0:
        raise ValueError("a GPU's memory must be positive")
    share = needed_bytes * SAFETY / device_bytes
    for slices in (MAX_TRIALS_PER_GPU, 4, 2):
        if share <= 1 / slices:
            return 1 / slices
    return 1.0


def trials_per_gpu(fraction: float) -> int:
    """How many trials of that fraction Ray places on one GPU at once."""
    return max(1, math.floor(1 / fraction + 1e-9))


def packed_resources(
    resources: Mapping[str, float], needed_bytes: int, device_bytes: int, alone: bool = False
) -> dict[str, float]:
    """A trial's Ray resources with its GPU share set from its predicted memory.

    Only a request for one whole GPU is packed (several GPUs per trial stay as asked);
    ``alone`` (a packed attempt ran out of memory) asks for the whole GPU again.
    """
    packed = dict(resources)
    if resources.get("GPU") != 1 or alone:
        return packed
    packed["GPU"] = gpu_fraction(needed_bytes, device_bytes)
    return packed


def is_out_of_memory(error: str | None) -> bool:
    """Whether a worker's error text says the accelerator (or the host) ran out of memory."""
    text = (error or "").lower()
    return any(sign in text for sign in _OUT_OF_MEMORY_SIGNS)


# -- from a built model (imports Keras) -------------------------------------------------------------


def model_memory(model: Any, batch_size: int) -> MemoryEstimate:
    """The training memory of a built Keras model at ``batch_size``: its parameter count and
    the size of every layer's output (nested models counted layer by layer)."""
    return estimate_memory(model.count_params(), _activation_values(model), batch_size)


def predict_trial_memory(
    space: Any, params: Mapping[str, Any], data_info: Any, batch_size: int
) -> MemoryEstimate:
    """Build the trial's model from ``space`` (a SearchSpace) and predict its training memory."""
    model = space.load_builder()(dict(params), data_info, space.settings)
    return model_memory(model, batch_size)


def predict_task_memory(
    space: Mapping[str, Any], params: Mapping[str, Any], dataset: Mapping[str, Any]
) -> MemoryEstimate:
    """A trial's predicted training memory from its job's space (as stored), parameters and
    dataset spec: the dataset is loaded (once per process) for its shapes, the model built."""
    from l2l.worker.executor import DEFAULT_BATCH_SIZE
    from l2l.worker.trainer import cached_dataset
    from search_spaces import batch_size_for, get_space

    search_space = get_space(dict(space))
    batch_size = batch_size_for(search_space, dict(params), DEFAULT_BATCH_SIZE)
    return predict_trial_memory(search_space, params, cached_dataset(dataset).info, batch_size)


def _activation_values(model: Any) -> int:
    total = 0
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:  # a nested model: count its own layers
            total += _activation_values(layer)
            continue
        outputs = layer.output if isinstance(layer.output, list | tuple) else [layer.output]
        for output in outputs:
            shape = [dim for dim in output.shape[1:]]  # without the batch dimension
            if any(dim is None for dim in shape):
                continue  # a dynamic dimension: nothing sound to count
            total += math.prod(int(dim) for dim in shape)
    return total
