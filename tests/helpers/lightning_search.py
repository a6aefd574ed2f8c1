"""A tiny PyTorch Lightning search, run by tests/test_lightning.py in a process of its own; prints a JSON report.

    python lightning_search.py search <directory>     # 3 trials, median pruning, no pruning callback written
    python lightning_search.py reload <run directory> # the best LightningModule, loaded from disk
    python lightning_search.py interrupt <directory>  # long fits: the test sends SIGINT while one runs
    python lightning_search.py resume <directory>     # the interrupted search, run again to its end

``HB_TEST_JOBS`` sets ``n_jobs`` (trials then run in worker processes), ``HB_TEST_EPOCHS`` the epochs of a fit.

The model code is what a Lightning user writes: ``self.log("val_loss", ...)`` and ``Trainer(...).fit(...)``, with
one callback of their own (which must keep working) and none for pruning.
"""

import json
import os
import sys
from collections import defaultdict
from pathlib import Path

import lightning.pytorch as pl
import optuna
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).parent.parent))  # `helpers` importable when run as a script

from helpers.in_order import InOrder  # noqa: E402
from hyperbrace import SearchResult, current_trial, minimize  # noqa: E402

EPOCHS = 4


class Classifier(pl.LightningModule):
    def __init__(self, hidden, learning_rate):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
        self.learning_rate = learning_rate

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.learning_rate)


# The user's own callback: the epochs each trial trained (it must keep running next to hyperbrace's).
epochs_seen = defaultdict(int)


class CountEpochs(pl.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        marker = os.environ.get("HB_TEST_MARKER")
        if marker:  # tells the interrupting test which trials are fitting: one file per trial in this folder
            Path(marker, str(current_trial().number)).touch()

    def on_train_epoch_end(self, trainer, pl_module):
        epochs_seen[current_trial().number] += 1


def data():
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.long)
    return x[:300], y[:300], x[300:400], y[300:400]


def validation_loss(model, x_val, y_val):
    model.eval()
    with torch.no_grad():
        return nn.functional.cross_entropy(model(x_val), y_val).item()


def create_model(x_train, y_train, x_val, y_val):
    torch.manual_seed(0)
    # "frozen" learns nothing (learning rate 0): after one epoch its val_loss is far above a trained model's.
    learning_rate = {"trains": 0.01, "frozen": 0.0}[{{choice(["trains", "frozen"], name="config")}}]
    model = Classifier({{choice([16, 32], name="hidden")}}, learning_rate)
    trainer = pl.Trainer(max_epochs=int(os.environ.get("HB_TEST_EPOCHS", EPOCHS)), callbacks=[CountEpochs()],
                         accelerator="cpu", enable_checkpointing=False, logger=False)
    trainer.fit(model, DataLoader(TensorDataset(x_train, y_train), batch_size=32, shuffle=True),
                DataLoader(TensorDataset(x_val, y_val), batch_size=100))
    return {"loss": validation_loss(model, x_val, y_val), "model": model, "epochs": trainer.current_epoch}


def search(directory, **options):
    result = minimize(
        create_model, data, algo=InOrder(config=["trains", "frozen", "trains"], hidden=[16, 32]),
        prune=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0), directory=directory,
        study_name="lightning", show_progress=False, keep_models=1, **options,
    )
    logs = result.directory / "logs"
    return {
        "directory": str(result.directory),
        "states": [t.state.name for t in result.study.trials],
        "steps": [list(t.intermediate_values) for t in result.study.trials],
        "epochs_seen": dict(epochs_seen),
        "best_loss": result.best_loss,
        "best_run": result.best_run,
        "models": sorted(p.name for p in (result.directory / "models").iterdir() if not p.name.endswith(".owner.json")),
        "owners": sorted(p.name for p in (result.directory / "models").glob("*.owner.json")),
        "logs": {p.name: p.read_text() for p in sorted(logs.glob("trial-*.log"))},
    }


def reload(run_dir):
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(Path(run_dir) / "study.journal")))
    result = SearchResult(optuna.load_study(study_name=None, storage=storage), Path(run_dir))
    best_run, best_model = result
    _, _, x_val, y_val = data()
    return {
        "is_lightning_module": isinstance(best_model, pl.LightningModule),
        "class": type(best_model).__name__,
        "hidden": best_model.net[0].out_features,
        "score": validation_loss(best_model, x_val, y_val),
    }


if __name__ == "__main__":
    step, path = sys.argv[1:3]
    if step == "search":
        report = search(path, max_evals=3)
    elif step == "reload":
        report = reload(path)
    elif step in ("interrupt", "resume"):
        # The interrupted run raises KeyboardInterrupt out of minimize.
        report = search(path, max_evals=2, n_jobs=int(os.environ.get("HB_TEST_JOBS", "1")))
    print("REPORT " + json.dumps(report))
