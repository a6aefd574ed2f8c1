"""Models trained anywhere come home: saved models travel through Optuna's artifact store.

A worker on another machine saves a trial's model in its own (temporary) run directory, where the chief cannot
read it. When the plan names an artifact store (cluster runs do), the worker also uploads the saved model with
``optuna.artifacts.upload_artifact`` (so the study records it like any Optuna artifact) and notes the artifact's id
in the trial (``hb.artifact``); :meth:`SearchResult.load_model` on the chief finds the file missing and downloads it
into the run directory first. The chief's store is a ``FileSystemArtifactStore`` in ``<run dir>/artifacts``;
workers reach it through the chief's gRPC server (:mod:`hyperbrace.launchers.proxy`), or through any Optuna store
both sides can reach (S3: ``optuna.artifacts.Boto3ArtifactStore``). Only the ``keep_models`` best are kept there,
as in the run directory.

A saved model may be a file or a directory, so it travels as an uncompressed tar of its path relative to the run
directory (``models/trial-00007.keras``).

>>> import tempfile, pathlib
>>> run = pathlib.Path(tempfile.mkdtemp())
>>> store = chief_store(run)
>>> type(store).__name__
'FileSystemArtifactStore'
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import optuna

from hyperbrace.model_files import owner_file

__all__ = ["chief_store", "upload_model", "remove_model", "fetch_model", "ARTIFACT_ATTR", "ARTIFACTS_DIR"]

ARTIFACT_ATTR = "hb.artifact"
ARTIFACTS_DIR = "artifacts"


def chief_store(run_dir: Path) -> Any:
    """The artifact store in the chief's run directory."""
    from optuna.artifacts import FileSystemArtifactStore

    directory = Path(run_dir) / ARTIFACTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(directory))


def upload_model(trial: optuna.Trial, path: Path, run_dir: Path, store: Any) -> str:
    """Upload the model saved at ``path`` (a file or a directory inside ``run_dir``); returns the artifact id."""
    import warnings

    from optuna.artifacts import upload_artifact

    with tempfile.TemporaryDirectory(prefix="hyperbrace-model-") as scratch:
        archive = Path(scratch) / f"{path.name}.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(path, arcname=str(path.relative_to(run_dir)))
            owner = owner_file(path)  # which study and trial it belongs to, checked when it is loaded
            if owner.exists():
                tar.add(owner, arcname=str(owner.relative_to(run_dir)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            artifact_id = upload_artifact(study_or_trial=trial, file_path=str(archive), artifact_store=store)
    trial.set_user_attr(ARTIFACT_ATTR, artifact_id)
    return artifact_id


def remove_model(store: Any, artifact_id: str) -> None:
    """Drop an uploaded model that fell out of the best ``keep_models`` (already gone is fine)."""
    try:
        store.remove(artifact_id)
    except Exception:  # noqa: BLE001  (a model left behind costs disk, not correctness)
        pass


def fetch_model(run_dir: Path, artifact_id: str, store: Any | None = None) -> bool:
    """Download an uploaded model into ``run_dir`` (where its ``hb.model`` path points); False if it is gone."""
    store = store or chief_store(run_dir)
    try:
        with store.open_reader(artifact_id) as reader:
            data = reader.read()
    except Exception:  # noqa: BLE001  (optuna raises ArtifactNotFound, or OSError for a missing file)
        return False
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        tar.extractall(run_dir, filter="data")  # "data": no absolute paths, no links leaving run_dir
    return True
