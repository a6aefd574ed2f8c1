"""A tiny Keras classifier with templates (imported by the tests only when they run, so that merely collecting
the test suite does not import Keras)."""

import keras
import numpy as np
from sklearn.datasets import load_digits

from hyperbrace import STATUS_OK


def data():
    digits = load_digits()
    x = (digits.data[:400] / 16.0).astype("float32")
    y = keras.utils.to_categorical(digits.target[:400], 10)
    return x[:300], y[:300], x[300:], y[300:]


def create_model(x_train, y_train, x_val, y_val):
    model = keras.Sequential([
        keras.Input(shape=(64,)),
        keras.layers.Dense({{choice([16, 32])}}, activation="relu"),
        keras.layers.Dropout({{uniform(0, 0.5)}}),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer={{choice(["adam", "rmsprop"])}}, loss="categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size={{choice([32, 64])}}, epochs=2, verbose=0,
                        validation_data=(x_val, y_val))
    return {"loss": -history.history["val_accuracy"][-1], "status": STATUS_OK, "model": model}


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == np.argmax(y, axis=1)))
