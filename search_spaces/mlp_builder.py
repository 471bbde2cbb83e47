"""Builds the compiled Keras model for one point of the :mod:`search_spaces.mlp` space."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras

from search_spaces.mlp import DEFAULT_PARAMS
from search_spaces.model_output import add_output, compile_for_task
from search_spaces.spec import DataInfo
from search_spaces.template import resolve_params


def build(params: Mapping[str, Any], data: DataInfo, settings: Mapping[str, Any]) -> keras.Model:
    values = resolve_params(params, settings, DEFAULT_PARAMS)
    inputs = keras.Input(shape=data.input_shape, name="features")
    x = keras.layers.Flatten()(inputs) if len(data.input_shape) > 1 else inputs
    for _ in range(int(values["num_layers"])):
        x = keras.layers.Dense(int(values["units"]), activation=str(values["activation"]))(x)
        if settings.get("batch_norm", False):
            x = keras.layers.BatchNormalization(momentum=0.9)(x)  # settles within a few short epochs
        if float(values["dropout"]) > 0:
            x = keras.layers.Dropout(float(values["dropout"]))(x)
    model = keras.Model(inputs, add_output(x, data), name="mlp")
    return compile_for_task(model, data, values["learning_rate"])
