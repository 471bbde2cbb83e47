"""Builds the NAS-Bench-201 macro network around one cell of :mod:`search_spaces.nb201`.

stem conv -> N cells -> reduction -> N cells -> reduction -> N cells -> BN-ReLU ->
global average pooling -> classifier, as in the benchmark, with ``channels`` and
``cells_per_stage`` (N) from the settings. Only serialisable Keras layers are used,
so ``model.save("m.keras")`` and ``keras.models.load_model`` round-trip.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras

from search_spaces.model_output import add_output, compile_for_task
from search_spaces.nb201 import DEFAULT_PARAMS, NUM_NODES, edge_name
from search_spaces.spec import DataInfo, SpaceError
from search_spaces.template import resolve_params


@keras.saving.register_keras_serializable(package="l2l")
class Zero(keras.layers.Layer):
    """The benchmark's ``none`` op: zeros shaped like the input, so a node fed only by
    ``none`` edges still has a tensor (a Lambda layer would not survive saving)."""

    def call(self, inputs: Any) -> Any:
        return keras.ops.zeros_like(inputs)


def build(params: Mapping[str, Any], data: DataInfo, settings: Mapping[str, Any]) -> keras.Model:
    values = resolve_params(params, settings, DEFAULT_PARAMS)
    channels = int(settings.get("channels", 8))
    cells_per_stage = int(settings.get("cells_per_stage", 1))
    if len(data.input_shape) == 2:
        input_shape: tuple[int, ...] = (*data.input_shape, 1)
    elif len(data.input_shape) == 3:
        input_shape = tuple(data.input_shape)
    else:
        raise SpaceError(
            f"the nb201_cell space needs image data (height, width, channels), got {data.input_shape}"
        )

    inputs = keras.Input(shape=data.input_shape, name="image")
    x = inputs if input_shape == tuple(data.input_shape) else keras.layers.Reshape(input_shape)(inputs)
    x = keras.layers.Conv2D(channels, 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = _batch_norm(name="stem_bn")(x)
    for stage in range(3):
        if stage > 0:
            channels *= 2
            x = _reduction_block(x, channels)
        for _ in range(cells_per_stage):
            x = _cell(x, values, channels)
    x = _batch_norm()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, add_output(x, data), name="nb201")
    return compile_for_task(model, data, settings.get("learning_rate", 3e-3))


def _cell(x: Any, values: Mapping[str, Any], channels: int) -> Any:
    nodes = [x]
    for j in range(1, NUM_NODES):
        incoming = [_edge(nodes[i], str(values[edge_name(j, i)]), channels) for i in range(j)]
        incoming = [t for t in incoming if t is not None]
        if not incoming:
            nodes.append(Zero()(nodes[0]))
        elif len(incoming) == 1:
            nodes.append(incoming[0])
        else:
            nodes.append(keras.layers.Add()(incoming))
    return nodes[-1]


def _edge(x: Any, op: str, channels: int) -> Any | None:
    """The edge's output, or None for ``none`` (left out of the sum rather than adding zeros)."""
    if op == "none":
        return None
    if op == "skip_connect":
        return x
    if op == "nor_conv_1x1":
        return _relu_conv_bn(x, channels, 1)
    if op == "nor_conv_3x3":
        return _relu_conv_bn(x, channels, 3)
    if op == "avg_pool_3x3":
        return keras.layers.AveragePooling2D(3, strides=1, padding="same")(x)
    raise SpaceError(f"unknown NAS-Bench-201 op {op!r}")


def _batch_norm(name: str | None = None) -> keras.layers.BatchNormalization:
    # PyTorch's running-average momentum (0.1, i.e. Keras 0.9), as in the benchmark: with
    # Keras' 0.99 the statistics used for validation lag far behind after a few short epochs.
    return keras.layers.BatchNormalization(momentum=0.9, name=name)


def _relu_conv_bn(x: Any, channels: int, kernel: int, strides: int = 1) -> Any:
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(channels, kernel, strides=strides, padding="same", use_bias=False)(x)
    return _batch_norm()(x)


def _reduction_block(x: Any, channels: int) -> Any:
    """The benchmark's residual block: two ReLU-Conv-BN (the first with stride 2) plus a
    pooled 1x1-conv shortcut."""
    residual = _relu_conv_bn(x, channels, 3, strides=2)
    residual = _relu_conv_bn(residual, channels, 3)
    shortcut = keras.layers.AveragePooling2D(2, strides=2, padding="same")(x)
    shortcut = keras.layers.Conv2D(channels, 1, use_bias=False)(shortcut)
    return keras.layers.Add()([residual, shortcut])
