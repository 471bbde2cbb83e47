"""The output layer, loss and metrics every builder uses, chosen by the task.

Imports Keras, so only builders import this module. Backend-neutral Keras 3 only:
workers may run with KERAS_BACKEND=jax or torch.
"""

from __future__ import annotations

from typing import Any

import keras

from search_spaces.spec import DataInfo, SpaceError


def add_output(features: Any, data: DataInfo) -> Any:
    """Softmax over the classes for classification; one linear unit for regression."""
    if data.task == "regression" or data.num_classes == 1:
        return keras.layers.Dense(1, name="prediction")(features)
    if data.num_classes < 2:
        raise SpaceError(f"classification needs at least 2 classes, got {data.num_classes}")
    return keras.layers.Dense(data.num_classes, activation="softmax", name="prediction")(features)


def compile_for_task(model: keras.Model, data: DataInfo, learning_rate: float) -> keras.Model:
    """Compile with Adam and the loss/metrics the trainer expects for ``data.task``."""
    optimizer = keras.optimizers.Adam(learning_rate=float(learning_rate))
    if data.task == "regression" or data.num_classes == 1:
        model.compile(optimizer=optimizer, loss="mse", metrics=["mae"])
    else:
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
