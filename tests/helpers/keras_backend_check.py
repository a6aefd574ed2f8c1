"""Keras searches on the backend named by ``KERAS_BACKEND``, in a process of its own; prints a JSON report.

    KERAS_BACKEND=jax python keras_backend_check.py search <directory>   # pruning, n_jobs=2, the Hyperas layer
    KERAS_BACKEND=jax python keras_backend_check.py reload <run directory of the pruned search>

tests/test_keras_backends.py runs it once per backend (tensorflow, jax, torch): Keras picks its backend when first
imported, so each backend needs a process of its own.
"""

import json
import os
import sys
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).parent.parent))  # `helpers` importable when run as a script

import keras  # noqa: E402
import numpy as np  # noqa: E402

from helpers import keras_models  # noqa: E402
from helpers.keras_models import CountEpochs  # noqa: E402
from helpers.in_order import InOrder  # noqa: E402
from hyperbrace import STATUS_OK, SearchResult, minimize  # noqa: E402

EPOCHS = 3


def pruned_model(x_train, y_train, x_val, y_val):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((64,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10, activation="softmax"),
    ])
    # "frozen" learns nothing (learning rate 0): after one epoch its val_loss is far above a trained model's.
    learning_rate = {"trains": 0.01, "frozen": 0.0}[{{choice(["trains", "frozen"], name="config")}}]
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=EPOCHS, verbose=0, callbacks=[CountEpochs()],
              validation_data=(x_val, y_val))
    return {"loss": -keras_models.accuracy(model, x_val, y_val), "status": STATUS_OK, "model": model}


def search(directory: str) -> dict:
    pruned = minimize(
        pruned_model, keras_models.data, max_evals=2, algo=InOrder(config=["trains", "frozen"]),
        prune=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0), directory=directory,
        study_name="pruned", keep_models=1, show_progress=False,
    )
    parallel = minimize(keras_models.create_model, keras_models.data, max_evals=2, n_jobs=2, seed=0,
                        directory=directory, study_name="parallel", keep_models=1, show_progress=False)
    from hyperbrace.hyperas import Trials, optim, tpe

    trials = Trials()
    best_run, best_model = optim.minimize(model=keras_models.create_model, data=keras_models.data, algo=tpe.suggest,
                                          max_evals=1, trials=trials, verbose=False)
    return {
        "backend": keras.backend.backend(),
        "pruned": {
            "directory": str(pruned.directory),
            "states": [t.state.name for t in pruned.study.trials],
            "steps": [list(t.intermediate_values) for t in pruned.study.trials],
            "epochs_seen": [t.user_attrs.get("epochs_seen", 0) for t in pruned.study.trials],
            "in_worker": [t.user_attrs["hb.worker"].split(":")[1] != str(os.getpid()) for t in pruned.study.trials],
            "best_loss": pruned.best_loss,
            "models": sorted(p.name for p in (pruned.directory / "models").iterdir() if not p.name.endswith(".owner.json")),
            "owners": sorted(p.name for p in (pruned.directory / "models").glob("*.owner.json")),
        },
        "parallel": {
            "states": [t.state for t in parallel.trials],
            # host:pid:start of the process that ran each trial: worker processes, not this one
            "in_workers": all(t.user_attrs["hb.worker"].split(":")[1] != str(os.getpid())
                              for t in parallel.study.trials),
            "model_is_keras": isinstance(parallel.best_model, keras.Model),
        },
        "hyperas": {"trials": len(trials), "best_run": sorted(best_run),
                    "predict_shape": list(best_model.predict(keras_models.data()[2][:5], verbose=0).shape)},
    }


def reload(run_dir: str) -> dict:
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(Path(run_dir) / "study.journal")))
    best_model = SearchResult(optuna.load_study(study_name=None, storage=storage), Path(run_dir)).best_model
    _, _, x_val, y_val = keras_models.data()
    return {
        "backend": keras.backend.backend(),
        "is_model": isinstance(best_model, keras.Model),
        "score": -keras_models.accuracy(best_model, x_val, y_val),
        "predictions_finite": bool(np.isfinite(best_model.predict(x_val, verbose=0)).all()),
    }


if __name__ == "__main__":
    step, path = sys.argv[1:3]
    assert os.environ.get("KERAS_BACKEND"), "set KERAS_BACKEND"
    print("REPORT " + json.dumps(search(path) if step == "search" else reload(path)))
