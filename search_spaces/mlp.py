"""The multilayer-perceptron space: depth, width, activation, dropout and training knobs.

Pure Python; the model is made by :mod:`search_spaces.mlp_builder`. Image inputs
are flattened, so the space takes both tabular and image data.
"""

from __future__ import annotations

from search_spaces.spec import Choice, FloatRange, IntRange
from search_spaces.template import BOOLEAN, FRACTION, POSITIVE_INT, POSITIVE_NUMBER, Template, one_of

#: Activations a custom space may offer; all are names ``keras.layers.Dense`` accepts.
ACTIVATIONS = ("relu", "tanh", "gelu", "elu", "selu", "silu", "sigmoid", "leaky_relu")

DECISIONS = (
    IntRange("num_layers", 1, 4),
    Choice("units", (16, 32, 64, 128, 256)),
    Choice("activation", ("relu", "tanh", "gelu")),
    Choice("dropout", (0.0, 0.1, 0.25, 0.5)),
    FloatRange("learning_rate", 1e-4, 3e-2, log=True),
    # The trainer reads the batch size from the params, so searching it needs no builder support.
    Choice("batch_size", (16, 32, 64)),
)

DEFAULT_PARAMS = {
    "num_layers": 2,
    "units": 64,
    "activation": "relu",
    "dropout": 0.0,
    "learning_rate": 1e-3,
    "batch_size": 32,
}

MLP = Template(
    name="mlp",
    builder="search_spaces.mlp_builder:build",
    decisions=DECISIONS,
    default_params=DEFAULT_PARAMS,
    default_settings={"batch_norm": False},
    decision_rules={
        "num_layers": POSITIVE_INT,
        "units": POSITIVE_INT,
        "activation": one_of(ACTIVATIONS),
        "dropout": FRACTION,
        "learning_rate": POSITIVE_NUMBER,
        "batch_size": POSITIVE_INT,
    },
    setting_rules={"batch_norm": BOOLEAN},
    input_kinds=frozenset({"tabular", "image"}),
)
