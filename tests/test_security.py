"""What a study holds and who can make whom run code: no secrets published, the published plan signed and checked.

Real processes (a chief script, `hyperbrace worker`) and real databases (SQLite; PostgreSQL for the password test).
About 25 s.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import cloudpickle
import optuna
import pytest

from hyperbrace import minimize, uniform  # noqa: F401  (uniform is what the template calls)
from hyperbrace.executor import PLAN_ATTR, published_plan
from hyperbrace.plan_signing import KEY_ENV, KEY_FILE, PlanAuthenticationError

REPO = Path(__file__).resolve().parents[1]

CHIEF = """
import sys
from hyperbrace import minimize, uniform

API_TOKEN = "tok-SECRET-123"   # a credential the model uses: must not be published
MIRROR = "postgresql://reader:pw-SECRET-456@db.example/hb"

def model():
    x = {{uniform(-1, 1)}}
    headers = {"Authorization": API_TOKEN, "mirror": MIRROR}
    return x * x

minimize(model, max_evals=2, storage=sys.argv[1], study_name="guarded", show_progress=False)
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def _worker(url: str, cwd: Path, *options: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hyperbrace.cli", "worker", "--storage", url, "--study", "guarded", "--wait", "5",
         *options],
        cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=120,
    )


@pytest.fixture(scope="module")
def chief(tmp_path_factory):
    """A finished search on SQLite, started by a script that has a token and a password URL in its globals."""
    home = tmp_path_factory.mktemp("chief")
    (home / "search.py").write_text(CHIEF)
    url = f"sqlite:///{home / 'shared.db'}"
    done = subprocess.run([sys.executable, "search.py", url], cwd=home, env=_env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return home, url, done.stderr


def _plan_value(url: str) -> dict:
    study = optuna.load_study(study_name="guarded", storage=url)
    return study._storage.get_study_system_attrs(study._study_id)[PLAN_ATTR]


def test_captured_credentials_are_left_out_of_the_published_plan_with_a_warning(chief):
    home, url, stderr = chief
    assert "not publishing API_TOKEN (used by model()), MIRROR (used by model())" in stderr
    blob = base64.b64decode(_plan_value(url)["plan"])
    assert b"tok-SECRET-123" not in blob and b"pw-SECRET-456" not in blob
    study = optuna.load_study(study_name="guarded", storage=url)
    plan = published_plan(study, run_dir=home / "hyperbrace-runs" / "guarded")
    assert "API_TOKEN" not in plan.model.original.__globals__
    # The key the chief made is private to its owner, and the chief said where it is.
    key_file = home / "hyperbrace-runs" / "guarded" / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and str(key_file) in stderr


def test_a_worker_with_the_key_joins_and_one_without_is_refused(chief, tmp_path):
    home, url, _ = chief
    # Same machine and directory: the key file is found (the budget is used up, so it leaves at once).
    same = _worker(url, home)
    assert same.returncode == 0 and "budget is used up" in same.stderr, same.stderr
    # Another machine with no key.
    keyless = _worker(url, tmp_path)
    assert keyless.returncode == 1 and "has no key to check it" in keyless.stderr and KEY_ENV in keyless.stderr
    # The key given through the environment.
    key = (home / "hyperbrace-runs" / "guarded" / KEY_FILE).read_text().strip()
    assert _worker(url, tmp_path, **{KEY_ENV: key}).returncode == 0
    wrong = _worker(url, tmp_path, **{KEY_ENV: "another key"})
    assert wrong.returncode == 1 and "does not match its signature" in wrong.stderr


class Planted:
    """Unpickling this writes a marker: it stands for code a database writer wants workers to run."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_tampered_plan_is_refused_before_it_is_unpickled(tmp_path):
    home = tmp_path / "chief"
    home.mkdir()
    (home / "search.py").write_text(CHIEF)
    url = f"sqlite:///{home / 'shared.db'}"
    assert subprocess.run([sys.executable, "search.py", url], cwd=home, env=_env(), capture_output=True,
                          timeout=120).returncode == 0
    marker = tmp_path / "code-ran"
    value = dict(_plan_value(url))
    value["plan"] = base64.b64encode(cloudpickle.dumps(Planted(str(marker)))).decode()  # the signature is kept
    study = optuna.load_study(study_name="guarded", storage=url)
    study._storage.set_study_system_attr(study._study_id, PLAN_ATTR, value)
    refused = _worker(url, home)
    assert refused.returncode == 1
    assert "refusing the published plan" in refused.stderr and "does not match its signature" in refused.stderr
    assert not marker.exists()
    with pytest.raises(PlanAuthenticationError):
        published_plan(optuna.load_study(study_name="guarded", storage=url), run_dir=home / "hyperbrace-runs/guarded")
    assert not marker.exists()


def test_an_unsigned_plan_needs_an_explicit_opt_in_on_both_sides(tmp_path):
    (tmp_path / "search.py").write_text(CHIEF)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    done = subprocess.run([sys.executable, "search.py", url], cwd=tmp_path, env=_env(**{KEY_ENV: "off"}),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert _plan_value(url)["hmac-sha256"] is None and not (tmp_path / "hyperbrace-runs/guarded" / KEY_FILE).exists()
    refused = _worker(url, tmp_path)
    assert refused.returncode == 1 and "is not signed" in refused.stderr and "--allow-unsigned-plan" in refused.stderr
    accepted = _worker(url, tmp_path, "--allow-unsigned-plan")
    assert accepted.returncode == 0, accepted.stderr


def test_a_key_file_others_can_read_is_refused(chief, tmp_path):
    home, url, _ = chief
    key_file = tmp_path / "key"
    key_file.write_text((home / "hyperbrace-runs" / "guarded" / KEY_FILE).read_text())
    key_file.chmod(0o644)
    refused = _worker(url, tmp_path, "--plan-key-file", str(key_file))
    assert refused.returncode == 1 and f"chmod 600 {key_file}" in refused.stderr
    key_file.chmod(0o600)
    assert _worker(url, tmp_path, "--plan-key-file", str(key_file)).returncode == 0


PG_URL = os.environ.get("HYPERBRACE_TEST_POSTGRES_URL")


@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason="no PostgreSQL server: run the tests with `make test` "
                                       "(or `bash scripts/test-postgres.sh run pytest`)")
def test_the_database_password_is_written_nowhere_in_the_study(tmp_path, monkeypatch):
    from sqlalchemy.engine import make_url

    monkeypatch.setenv(KEY_ENV, "a key of our own")
    # The test server trusts loopback, so it accepts any password: the one here must still never be stored.
    url = make_url(PG_URL).set(password="pw-NEVER-STORED").render_as_string(hide_password=False)
    name = f"secret-{uuid.uuid4().hex[:10]}"

    def model():
        x = {{uniform(-1, 1)}}
        return x * x

    minimize(model, max_evals=2, storage=url, study_name=name, directory=tmp_path, show_progress=False)
    study = optuna.load_study(study_name=name, storage=PG_URL)
    stored = [study._storage.get_study_system_attrs(study._study_id), study.user_attrs]
    stored += [[t.user_attrs, t.system_attrs, t.params] for t in study.get_trials()]
    text = json.dumps(stored, default=repr)
    assert PLAN_ATTR in text and "pw-NEVER-STORED" not in text
    assert b"pw-NEVER-STORED" not in base64.b64decode(stored[0][PLAN_ATTR]["plan"])
