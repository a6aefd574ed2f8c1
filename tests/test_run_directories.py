"""One study, one run directory; a saved model records its study and trial; stored model paths stay inside the run
directory. About 3 s."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import optuna
import pytest

from hyperbrace import minimize, uniform  # noqa: F401  (uniform is what the template calls)
from hyperbrace.model_files import ModelOwnerError, UnsafeModelPathError


def tagged(tag):
    x = {{uniform(-1, 1)}}
    print(f"study {tag}")
    return {"loss": x * x, "model": {"tag": tag, "x": x}}


def run(directory, name, max_evals=3):
    return minimize(tagged, data=lambda: name, max_evals=max_evals, study_name=name, directory=directory, seed=0,
                    show_progress=False)


def test_names_that_clean_to_the_same_folder_get_distinct_run_directories(tmp_path):
    first, second = run(tmp_path, "exp/1"), run(tmp_path, "exp_1")
    assert first.directory != second.directory
    assert second.directory.name == "exp_1" and first.directory.name.startswith("exp_1+")
    assert first.best_model["tag"] == "exp/1" and second.best_model["tag"] == "exp_1"
    for result, tag in ((first, "exp/1"), (second, "exp_1")):
        logs = sorted((result.directory / "logs").glob("trial-*.log"))
        assert len(logs) == 3 and all(f"study {tag}\n" in log.read_text() for log in logs)
    # Running each again finds its own study (the names map to the same folders every time).
    assert len(run(tmp_path, "exp/1", 4).trials) == 4 and len(run(tmp_path, "exp_1", 4).trials) == 4


def test_a_model_that_another_study_saved_in_its_place_is_refused(tmp_path):
    mine, other = run(tmp_path, "mine"), run(tmp_path, "other")
    number = mine.best_trial.number
    # The other study's trial with the same number saves over this one (two studies sharing one folder).
    theirs = other.directory / "models"
    for suffix in (".pkl", ".owner.json"):
        source = theirs / f"trial-{number:05d}{suffix}"
        if not source.exists():
            pytest.skip("the other study kept no model with that number")
        shutil.copy(source, mine.directory / "models" / source.name)
    with pytest.raises(ModelOwnerError, match=f"belongs to trial {number} of study 'other', not to trial {number} "
                                              "of study 'mine'"):
        mine.load_model(number)


class Planted:
    """Unpickling this writes a marker: it stands for code run by loading a file a storage writer chose."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_stored_model_path_outside_the_run_directory_is_never_followed(tmp_path):
    import sqlalchemy

    from hyperbrace.result import SearchResult

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    result = minimize(tagged, data=lambda: "safe", max_evals=2, study_name="safe", directory=tmp_path / "runs",
                      storage=url, seed=0, show_progress=False)
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(Planted(str(marker))))
    os.symlink(evil, result.directory / "models" / "trial-99999.pkl")
    number = result.best_trial.number
    engine = sqlalchemy.create_engine(url)
    # Whoever can write the database changes the path: relative, absolute, through a symbolic link.
    for planted in (os.path.relpath(evil, result.directory), str(evil), "models/trial-99999.pkl"):
        with engine.begin() as connection:
            connection.execute(
                sqlalchemy.text("UPDATE trial_user_attributes SET value_json = :path WHERE key = 'hb.model' AND "
                                "trial_id = (SELECT trial_id FROM trials WHERE number = :number)"),
                {"path": json.dumps(planted), "number": number},
            )
        again = SearchResult(optuna.load_study(study_name="safe", storage=url), result.directory)
        assert again.best_trial.user_attrs["hb.model"] == planted
        with pytest.raises(UnsafeModelPathError, match="leads outside .*models"):
            again.best_model
        assert next(r for r in again.trials if r.number == number).model_path is None
    engine.dispose()
    assert not marker.exists()
