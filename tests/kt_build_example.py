"""KerasTuner-style ``build(hp)`` functions for the digits images, used by the search-space tests."""

import keras


def build(hp):
    inputs = keras.Input(shape=(8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    activation = hp.Choice("activation", ["relu", "tanh"])
    for _ in range(hp.Int("num_layers", 1, 2)):
        x = keras.layers.Dense(hp.Int("units", 16, 64, step=16), activation=activation)(x)
    rate = hp.Float("dropout_rate", 0.1, 0.5, step=0.2)
    if hp.Boolean("dropout"):
        x = keras.layers.Dropout(rate)(x)
    outputs = keras.layers.Dense(hp.Fixed("classes", 10), activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    learning_rate = hp.Float("learning_rate", 1e-4, 1e-2, sampling="log")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def build_uncompiled(hp):
    inputs = keras.Input(shape=(8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(10, activation=hp.Choice("activation", ["relu", "tanh"]))(x)
    return keras.Model(inputs, outputs)
