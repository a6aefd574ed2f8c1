"""A tiny Keras model built through a ``build_block()`` helper that holds the templates (the KerasTuner habit),
searched with two worker processes. Run as a script by tests/test_template_reach.py (Keras stays out of pytest):

    python keras_blocks.py <directory>    -> prints REPORT {json}
"""

import json
import sys

import keras
from sklearn.datasets import load_digits

from hyperbrace import STATUS_OK, choice, minimize, uniform  # noqa: F401  (choice, uniform: in the templates)


def data():
    digits = load_digits()
    x = (digits.data[:300] / 16.0).astype("float32")
    y = keras.utils.to_categorical(digits.target[:300], 10)
    return x[:200], y[:200], x[200:], y[200:]


def build_block(x, i):
    x = keras.layers.Dense({{choice([8, 16], name=f"units_{i}")}}, activation="relu")(x)
    return keras.layers.Dropout({{uniform(0, 0.5)}})(x)


def create_model(x_train, y_train, x_val, y_val):
    inputs = keras.Input(shape=(64,))
    x = build_block(inputs, 0)
    x = build_block(x, 1)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=32, epochs=1, verbose=0, validation_data=(x_val, y_val))
    return {"loss": -history.history["val_accuracy"][-1], "status": STATUS_OK, "model": model}


if __name__ == "__main__":
    # prune=None: which of two workers' trials the default ASHA stops depends on their timing (tests/test_pruning.py
    # tests pruning); this checks the templates reached through a helper.
    result = minimize(create_model, data, max_evals=4, n_jobs=2, seed=0, directory=sys.argv[1], keep_models=1,
                      show_progress=False, prune=None)
    model = result.best_model
    print("REPORT " + json.dumps({
        "best_run": result.best_run,
        "states": [t.state for t in result.trials],
        "space": [e["name"] for e in result.search_space],
        "units": [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)][:2],
    }))
