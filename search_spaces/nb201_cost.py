"""Parameter count and FLOPs of a NAS-Bench-201 network, from its cell alone. Pure Python.

The benchmark's macro network (``TinyNetwork`` of NAS-Bench-201) with ``C`` = 16 channels
and ``N`` = 5 cells per stage:

* stem: 3x3 conv (3 -> C, no bias) + batch norm;
* stage 1: N cells at C channels; a residual block C -> 2C (stride 2); stage 2: N cells at
  2C; a residual block 2C -> 4C; stage 3: N cells at 4C;
* batch norm + ReLU, global average pooling, a linear classifier (4C -> classes, with bias).

A cell edge at ``c`` channels, stride 1: ``nor_conv_kxk`` is ReLU, a k x k conv (no bias)
and batch norm, ``k*k*c*c + 2c`` parameters; ``skip_connect``, ``avg_pool_3x3`` and
``none`` have none. The residual block ``a -> b``: two ReLU-conv-BN 3x3 convs (``a -> b``
stride 2, ``b -> b``) plus a 2x2 average pool and a 1x1 conv ``a -> b`` on the shortcut:
``9ab + 2b + 9b^2 + 2b + ab``. Batch norm counts its affine weight and bias (2 per
channel); running statistics are buffers, not parameters.

FLOPs are multiply-adds of the convolutions and the classifier (``k*k*c_in*c_out`` per
output pixel; ``in*out`` for the linear layer), as NAS-Bench-201's FLOPs count them;
pooling, batch norm, ReLU and additions are left out. Resolutions: 32x32 input for
CIFAR (stages at 32, 16, 8), 16x16 for ImageNet16-120 (16, 8, 4).

Hand checks (CIFAR-10): the all-``nor_conv_3x3`` cell gives 1,531,546 parameters and
220.12 M FLOPs, and a cell without convolutions 73,306 parameters and 7.78 M FLOPs; the
benchmark lists its largest network at 1.53 M parameters and 220.1 M FLOPs and its
smallest at 0.073 M parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from search_spaces.nb201 import EDGE_NAMES, arch_str, params_from_arch_str

#: The benchmark's channels of the first stage and cells per stage.
CHANNELS = 16
CELLS_PER_STAGE = 5

#: Classes and input side of each dataset of the table.
DATASETS = {"cifar10": (10, 32), "cifar100": (100, 32), "imagenet16": (120, 16)}

#: Kernel size of each convolution op; the other ops have no weights and no FLOPs counted.
_CONV_KERNEL = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}


def _conv(k: int, c_in: int, c_out: int, side_out: int) -> tuple[int, int]:
    """(parameters, FLOPs) of a bias-free k x k conv followed by batch norm."""
    return k * k * c_in * c_out + 2 * c_out, k * k * c_in * c_out * side_out * side_out


def network_cost(cell: str | Mapping[str, Any], dataset: str = "cifar10") -> dict[str, int]:
    """``{"parameters": ..., "flops": ...}`` of the benchmark network with ``cell`` (arch
    string or the six edge decisions) on ``dataset`` (``cifar10``, ``cifar100``, ``imagenet16``)."""
    params = params_from_arch_str(cell) if isinstance(cell, str) else dict(cell)
    arch_str(params)  # validates the ops
    classes, side = DATASETS[dataset]
    total_params, total_flops = _conv(3, 3, CHANNELS, side)  # the stem
    channels = CHANNELS
    for stage in range(3):
        if stage:  # the residual block that halves the side and doubles the channels
            side //= 2
            conv_a = _conv(3, channels, 2 * channels, side)
            conv_b = _conv(3, 2 * channels, 2 * channels, side)
            shortcut = (channels * 2 * channels, channels * 2 * channels * side * side)
            for part in (conv_a, conv_b, shortcut):
                total_params += part[0]
                total_flops += part[1]
            channels *= 2
        for name in EDGE_NAMES:
            kernel = _CONV_KERNEL.get(params[name])
            if kernel is not None:
                edge_params, edge_flops = _conv(kernel, channels, channels, side)
                total_params += CELLS_PER_STAGE * edge_params
                total_flops += CELLS_PER_STAGE * edge_flops
    total_params += 2 * channels + channels * classes + classes  # last batch norm, classifier
    total_flops += channels * classes
    return {"parameters": total_params, "flops": total_flops}
