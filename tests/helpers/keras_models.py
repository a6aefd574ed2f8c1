"""A tiny Keras classifier with templates (imported by the tests only when they run, so that merely collecting
the test suite does not import Keras)."""

from collections import defaultdict

import keras
import numpy as np
from sklearn.datasets import load_digits

from hyperbrace import STATUS_OK, current_trial

#: What the user's own callback saw in this process: trial number -> epochs its fits ran.
epochs_seen: dict[int, int] = defaultdict(int)


class CountEpochs(keras.callbacks.Callback):
    """The user's own callback: it must keep running next to hyperbrace's pruning callback. It counts each trial's
    epochs in :data:`epochs_seen` and, for trials that ran in a worker process (``n_jobs``, TensorFlow's isolated
    trials), in the trial's user attribute ``epochs_seen``."""

    def on_epoch_end(self, epoch, logs=None):
        context = current_trial()
        epochs_seen[context.number] += 1
        context.trial.set_user_attr("epochs_seen", epochs_seen[context.number])


def small_digits():
    """200 training and 100 validation digits: 64 features in [0, 1], integer labels."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    return x[:200], y[:200], x[200:300], y[200:300]


def small_classifier(learning_rate: float) -> keras.Model:
    """A seeded 64-32-10 classifier, compiled with Adam(learning_rate) and an accuracy metric (for integer labels).
    A learning rate of 0 learns nothing: after one epoch it is far behind a trained one, by loss and accuracy."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


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
