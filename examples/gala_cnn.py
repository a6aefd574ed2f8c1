"""The Hyperas article's example, written for hyperbrace: tune a Keras CNN on the "Gala" festival images.

The article tunes four hyperparameters of a small CNN on the HackerEarth "Gala" challenge (48x48 grayscale images
of four classes: Attire, Decorationandsignage, Food, misc) by writing them in place in the model code:

* ``Dropout({{uniform(0, 1)}})``                      -> parameter ``Dropout``
* ``Dense({{choice([256, 512, 1024])}})``             -> parameter ``Dense``
* ``optimizer={{choice(['rmsprop', 'adam', 'sgd'])}}`` -> parameter ``optimizer``
* ``batch_size={{choice([64, 128])}}``                 -> parameter ``batch_size``

Run it on the challenge's data (``train.csv`` and ``Train Images/``), or on the stand-in that
``make_gala_standin.py`` writes in the same layout::

    python examples/make_gala_standin.py --out examples/gala_data
    python examples/gala_cnn.py --data examples/gala_data --quick   # a few minutes on a laptop CPU (`make demo`)
    python examples/gala_cnn.py --data examples/gala_data           # the article's sizes: 32-64-128 filters,
                                                                     # 20 epochs, 50 trials (hours on a CPU)

Each run keeps its study in ``hyperbrace-runs/<study>/``; running the same command again resumes that study
(``--max-evals`` is the total), so an interrupted search loses nothing.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from dataclasses import dataclass
from pathlib import Path

# Keras 3 fixes its backend the first time it is imported, so this must come before `import keras`. PyTorch is the
# fastest Keras backend on a CPU for this model (and the one installed here); setdefault keeps a KERAS_BACKEND the
# user chose.
os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras.layers import (  # noqa: E402
    Activation,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPooling2D,
)
from PIL import Image  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from hyperbrace import STATUS_OK, choice, minimize, uniform  # noqa: E402,F401  (choice/uniform: the templates)

CLASSES = ("Attire", "Decorationandsignage", "Food", "misc")
IMAGE_SIZE = 48

# The model's size. Plain Python variables, not templates: they scale the whole run (the article's sizes by
# default; --quick shrinks them) and are the same in every trial. The three convolution blocks have FILTERS,
# 2*FILTERS and 4*FILTERS filters.
FILTERS = 32
EPOCHS = 20
# BatchNormalization validates with moving averages of the batch statistics, which follow the batches by
# (1 - momentum) a step. Keras' 0.99 suits the article's thousands of steps; a quick run has a few dozen, after
# which those averages are still near their start and validation accuracy stays at chance while training accuracy
# climbs. --quick therefore uses 0.9.
BN_MOMENTUM = 0.99


def data(directory: str | os.PathLike[str] = "examples/gala_data", limit: int | None = None, seed: int = 0):
    """Read the challenge's layout: ``train.csv`` (``Image,Class``) and the images in ``Train Images/``.

    Returns ``x_train, y_train, x_val, y_val``: images as float32 arrays of shape (n, 48, 48, 1) scaled to [0, 1],
    classes one-hot in the order of ``CLASSES``, 20% held out for validation (stratified, fixed ``seed``).
    ``limit`` reads only the first ``limit`` rows of ``train.csv`` (for a quicker run). Images of another size or
    in colour (the real challenge's) are converted to 48x48 grayscale.

    >>> import tempfile, make_gala_standin
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = make_gala_standin.write_standin(Path(tmp), n_images=40)
    ...     x_train, y_train, x_val, y_val = data(tmp)
    >>> x_train.shape, y_train.shape, x_val.shape, float(x_train.max()) <= 1.0
    ((32, 48, 48, 1), (32, 4), (8, 48, 48, 1), True)
    """
    directory = Path(directory)
    table = directory / "train.csv"
    if not table.exists():
        raise FileNotFoundError(
            f"{table} not found: --data must be a folder holding train.csv and 'Train Images/' (write a stand-in "
            f"with: python examples/make_gala_standin.py --out {directory})"
        )
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))[:limit]
    unknown = sorted({row["Class"] for row in rows} - set(CLASSES))
    if unknown:
        raise ValueError(f"{table}: unknown classes {unknown}; expected {list(CLASSES)}")
    images = np.empty((len(rows), IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.float32)
    for i, row in enumerate(rows):
        with Image.open(directory / "Train Images" / row["Image"]) as image:
            image = image.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
            images[i, :, :, 0] = np.asarray(image, dtype=np.float32) / 255.0
    labels = np.array([CLASSES.index(row["Class"]) for row in rows])
    one_hot = keras.utils.to_categorical(labels, num_classes=len(CLASSES))
    x_train, x_val, y_train, y_val = train_test_split(
        images, one_hot, test_size=0.2, random_state=seed, stratify=labels
    )
    return x_train, y_train, x_val, y_val


def create_model(x_train, y_train, x_val, y_val):
    """The article's CNN. Each ``{{...}}`` is a hyperparameter; hyperbrace names it by the word in front of it."""
    model = keras.Sequential()
    model.add(keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 1)))

    # Block 1: two 3x3 convolutions.
    model.add(Conv2D(FILTERS, (3, 3), padding="same"))
    model.add(BatchNormalization(momentum=BN_MOMENTUM))
    model.add(Activation("relu"))
    model.add(Conv2D(FILTERS, (3, 3), padding="same"))
    model.add(BatchNormalization(momentum=BN_MOMENTUM))
    model.add(Activation("relu"))
    model.add(MaxPooling2D(pool_size=(2, 2)))

    # Block 2: two 5x5 convolutions.
    model.add(Conv2D(2 * FILTERS, (5, 5), padding="same"))
    model.add(BatchNormalization(momentum=BN_MOMENTUM))
    model.add(Activation("relu"))
    model.add(Conv2D(2 * FILTERS, (5, 5), padding="same"))
    model.add(BatchNormalization(momentum=BN_MOMENTUM))
    model.add(Activation("relu"))
    model.add(MaxPooling2D(pool_size=(2, 2)))

    # Block 3: one 3x3 convolution.
    model.add(Conv2D(4 * FILTERS, (3, 3), padding="same"))
    model.add(BatchNormalization(momentum=BN_MOMENTUM))
    model.add(Activation("relu"))

    model.add(Flatten())
    model.add(Dense({{choice([256, 512, 1024])}}))  # template -> "Dense": the hidden layer's width
    model.add(Activation("relu"))
    model.add(Dropout({{uniform(0, 1)}}))  # template -> "Dropout": the dropout rate
    model.add(Dense(len(CLASSES)))
    model.add(Activation("softmax"))

    model.compile(
        loss="categorical_crossentropy",
        optimizer={{choice(["rmsprop", "adam", "sgd"])}},  # template -> "optimizer"
        metrics=["accuracy"],
    )
    # Train all EPOCHS, as the article does, but keep the weights of the best epoch (Keras restores them when
    # training ends): the saved model is then the one whose accuracy is the trial's loss.
    best_epoch = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=EPOCHS, restore_best_weights=True)
    result = model.fit(
        x_train,
        y_train,
        batch_size={{choice([64, 128])}},  # template -> "batch_size"
        epochs=EPOCHS,
        verbose=2,  # one line an epoch, into this trial's log file (hyperbrace-runs/<study>/logs/)
        validation_data=(x_val, y_val),
        callbacks=[best_epoch],
    )
    best_val_accuracy = float(np.amax(result.history["val_accuracy"]))
    print("Best validation accuracy of epoch:", best_val_accuracy)
    # hyperbrace minimizes the loss: the negative accuracy, as in the article.
    return {"loss": -best_val_accuracy, "status": STATUS_OK, "model": model}


@dataclass(frozen=True)
class Budget:
    """How big a run is: images read (None: all), filters of the first block, epochs, trials, BN momentum."""

    images: int | None
    filters: int
    epochs: int
    max_evals: int
    bn_momentum: float


# The article's sizes, and a scaled one that finishes `make demo` in a few minutes on a 2-core CPU.
FULL = Budget(images=None, filters=32, epochs=20, max_evals=50, bn_momentum=0.99)
QUICK = Budget(images=600, filters=8, epochs=6, max_evals=6, bn_momentum=0.9)


def main(argv: list[str] | None = None) -> int:
    global FILTERS, EPOCHS, BN_MOMENTUM
    parser = argparse.ArgumentParser(description="Tune the Hyperas article's Gala CNN with hyperbrace.")
    parser.add_argument("--data", default="examples/gala_data", help="folder with train.csv and 'Train Images/'")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help=f"scaled run: {QUICK.images} images, {QUICK.filters} filters, {QUICK.epochs} epochs, "
                           f"{QUICK.max_evals} trials")
    size.add_argument("--full", action="store_true",
                      help=f"the article's sizes (the default): all images, {FULL.filters} filters, "
                           f"{FULL.epochs} epochs, {FULL.max_evals} trials")
    parser.add_argument("--max-evals", type=int, help="total number of trials of the study")
    parser.add_argument("--epochs", type=int, help="epochs per trial")
    parser.add_argument("--filters", type=int, help="filters of the first convolution block (then 2x, 4x)")
    parser.add_argument("--images", type=int, help="read only this many images")
    parser.add_argument("--n-jobs", type=int, default=1, help="trials run at once in worker processes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the search's suggestions")
    parser.add_argument("--runs", default="hyperbrace-runs", help="where run directories are kept")
    args = parser.parse_args(argv)

    budget = QUICK if args.quick else FULL
    images = args.images if args.images is not None else budget.images
    FILTERS = args.filters or budget.filters
    EPOCHS = args.epochs or budget.epochs
    BN_MOMENTUM = budget.bn_momentum
    max_evals = args.max_evals or budget.max_evals
    # One study per size of run: re-running the same command resumes it; other sizes don't mix into it.
    study = f"gala_cnn-{'quick' if args.quick else 'full'}-{images or 'all'}img-{FILTERS}f-{EPOCHS}ep"

    print(f"Searching Dropout, Dense, optimizer and batch_size of the Gala CNN: {max_evals} trials, "
          f"{images or 'all'} images from {args.data}, {FILTERS}-{2 * FILTERS}-{4 * FILTERS} filters, "
          f"{EPOCHS} epochs a trial.")
    result = minimize(
        create_model,
        data,
        max_evals=max_evals,
        data_args={"directory": args.data, "limit": images},
        study_name=study,
        directory=args.runs,
        n_jobs=args.n_jobs,
        seed=args.seed,
    )
    if result.best_trial is None:
        print("No trial completed; see the logs in", result.directory / "logs")
        return 1

    best_run, best_model = result  # the Hyperas way of writing it
    print("\nbest_run =", best_run)
    print(f"Best validation accuracy found by the search: {-result.best_loss:.4f}")
    # The best model was saved by its trial; `best_model` loaded it back from the run directory.
    _, _, x_val, y_val = data(args.data, limit=images)
    loss, accuracy = best_model.evaluate(x_val, y_val, verbose=0)
    saved = next(t.model_path for t in result.trials if t.number == result.best_trial.number)
    print(f"Best model reloaded from {saved}: validation accuracy {accuracy:.4f}, loss {loss:.4f}")
    print(f"\nRun directory: {result.directory} (study journal, best models, one log per trial).")
    print("Run the same command again to resume this study; raise --max-evals to search further.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
