"""Runs a tiny framework search, or reloads its best model, in a process of its own; prints a JSON report.

    python framework_search.py search keras|torch <directory>
    python framework_search.py reload keras|torch <run directory>

The tests run both steps as separate processes: Keras and PyTorch never enter the pytest process (once imported,
their integrations act on every trial of every later test), and the best model is reloaded from the run
directory alone, by a process that never held it.
"""

import json
import sys
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).parent.parent))  # `helpers` importable when run as a script

from hyperbrace import SearchResult, minimize  # noqa: E402


def search(framework: str, directory: str) -> dict:
    if framework == "keras":
        from helpers import keras_models as models

        # prune=None: this checks the search, save and reload path; whether the default ASHA prunes trial 2 depends
        # on its loss against trial 0's in the last digits, i.e. on the thread count chosen from the machine's load
        # (pruning has its own tests: tests/test_pruning.py).
        options = {"max_evals": 3, "keep_models": 1, "prune": None}
    else:
        from helpers import torch_models as models

        options = {"max_evals": 4, "keep_models": 2}
    result = minimize(models.create_model, models.data, seed=0, directory=directory, show_progress=False, **options)
    return {
        "directory": str(result.directory),
        "study": result.study.study_name,
        "best_run": result.best_run,
        "best_loss": result.best_loss,
        "best_number": result.best_trial.number,
        "trials": [{"number": t.number, "state": t.state, "loss": t.loss} for t in result.trials],
        "models": sorted(p.name for p in (result.directory / "models").iterdir() if not p.name.endswith(".owner.json")),
        "owners": sorted(p.name for p in (result.directory / "models").glob("*.owner.json")),
    }


def reload(framework: str, run_dir: str) -> dict:
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(Path(run_dir) / "study.journal")))
    result = SearchResult(optuna.load_study(study_name=None, storage=storage), Path(run_dir))
    best_run, best_model = result
    if framework == "keras":
        import keras

        from helpers import keras_models

        _, _, x_val, y_val = keras_models.data()
        return {
            "backend": keras.backend.backend(),
            "is_model": isinstance(best_model, keras.Model),
            "units": best_model.layers[0].units,
            "rate": best_model.layers[1].rate,
            "predict_shape": list(best_model.predict(x_val[:5], verbose=0).shape),
            "score": -keras_models.accuracy(best_model, x_val, y_val),
        }
    import torch

    from helpers import torch_models

    _, _, x_val, y_val = torch_models.data()
    ranked = sorted((t for t in result.trials if t.state == "COMPLETE"), key=lambda t: t.loss)
    runner_up = result.load_model(ranked[1].number)
    return {
        "is_model": isinstance(best_model, torch.nn.Module),
        "hidden": best_model[0].out_features,
        "activation": type(best_model[1]).__name__,
        "predict_shape": list(best_model(x_val[:5]).shape),
        "score": torch_models.validation_loss(best_model, x_val, y_val),
        "runner_up": {"number": ranked[1].number, "loss": ranked[1].loss,
                      "score": torch_models.validation_loss(runner_up, x_val, y_val)},
    }


if __name__ == "__main__":
    step, framework, path = sys.argv[1:4]
    report = (search if step == "search" else reload)(framework, path)
    print("REPORT " + json.dumps(report))
