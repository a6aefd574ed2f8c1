"""``Trials``: the record of a search's trials, shaped like hyperopt's, so code written for Hyperas reads it as is.

Each trial is a dict as hyperopt keeps them::

    {"tid": 0, "state": 2, "result": {"loss": 0.12, "status": "ok", ...}, "spec": None,
     "misc": {"tid": 0, "cmd": ("domain_attachment", "FMinIter_Domain"), "workdir": None,
              "idxs": {"Dropout": [0], ...}, "vals": {"Dropout": [0.31], "optimizer": [1], ...},
              "real_vals": {"Dropout": 0.31, "optimizer": "adam", ...}},
     "exp_key": None, "owner": None, "version": 0, "book_time": datetime, "refresh_time": datetime}

``misc["vals"]`` holds hyperopt's values: for ``choice``/``pchoice`` the option's *index*, for the others the
number; a parameter that the trial did not sample (a branch that did not run) has ``[]``. ``misc["real_vals"]``
(a hyperbrace addition) holds the values the model saw (an object option's source text).

``result`` is what the model function returned. Unlike hyperopt, only the best trials' results keep their
``"model"`` (one for ``optim.minimize``, ``nb_models`` for ``optim.best_models``): the others are dropped as the
search goes, so a long search does not hold every trained network in memory. A failed trial's result is
``{"status": "fail", "error": "<what went wrong>"}`` (plus what the model returned, if it returned).

The same records are written into a ``hyperopt.Trials()`` passed instead (through its own ``new_trial_docs`` /
``insert_trial_docs`` / ``refresh``), so scripts that kept hyperopt's ``Trials`` keep working.

>>> trials = Trials()
>>> _ = record_trials(trials, [TrialRecord(result={"loss": 0.5, "status": "ok"}, vals={"lr": 0.01}, real_vals={"lr": 0.01}),
...                            TrialRecord(result={"loss": 0.25, "status": "ok"}, vals={"lr": 0.1}, real_vals={"lr": 0.1})],
...                            names=["lr"])
>>> len(trials), trials.losses(), trials.argmin
(2, [0.5, 0.25], {'lr': 0.1})
"""

from __future__ import annotations

import datetime
import math
import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from hyperbrace.trial import STATUS_OK

__all__ = ["Trials", "TrialRecord", "AllTrialsFailed", "record_trials", "best_trial_of", "completed_by_loss", "utcnow"]

JOB_STATE_DONE = 2  # hyperopt's state of a finished trial (successful or not)
_CMD = ("domain_attachment", "FMinIter_Domain")


class AllTrialsFailed(RuntimeError):
    """No trial completed with a finite loss, so there is no best trial."""


def utcnow() -> datetime.datetime:
    # hyperopt stores naive UTC times, rounded to milliseconds
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass
class TrialRecord:
    """One finished trial, as the Hyperas layer hands it to :func:`record_trials`."""

    result: dict[str, Any]
    vals: dict[str, Any]  #: name -> hyperopt value (index for choice/pchoice), for the sampled parameters
    real_vals: dict[str, Any]  #: name -> the value's record (what the model saw)
    book_time: datetime.datetime = field(default_factory=utcnow)
    refresh_time: datetime.datetime = field(default_factory=utcnow)


class Trials:
    """hyperopt's ``Trials`` for Hyperas scripts that do not install hyperopt: pass one to ``optim.minimize``
    and read it afterwards.

    >>> trials = Trials()
    >>> len(trials), list(trials)
    (0, [])
    """

    def __init__(self, exp_key: str | None = None, refresh: bool = True) -> None:
        self._exp_key = exp_key
        self._dynamic_trials: list[dict[str, Any]] = []
        self._trials: list[dict[str, Any]] = []

    # -- what scripts read ---------------------------------------------------------------------------------------
    @property
    def trials(self) -> list[dict[str, Any]]:
        return self._trials

    @property
    def results(self) -> list[dict[str, Any]]:
        return [t["result"] for t in self._trials]

    @property
    def miscs(self) -> list[dict[str, Any]]:
        return [t["misc"] for t in self._trials]

    @property
    def specs(self) -> list[Any]:
        return [t["spec"] for t in self._trials]

    @property
    def tids(self) -> list[int]:
        return [t["tid"] for t in self._trials]

    @property
    def vals(self) -> dict[str, list[Any]]:
        """name -> the values of the trials that sampled it (hyperopt's ``trials.vals``)."""
        return {name: [v for m in self.miscs for v in m["vals"].get(name, [])] for name in self._names()}

    @property
    def idxs(self) -> dict[str, list[int]]:
        """name -> the tids of the trials that sampled it (hyperopt's ``trials.idxs``)."""
        return {name: [i for m in self.miscs for i in m["idxs"].get(name, [])] for name in self._names()}

    def losses(self, bandit: Any = None) -> list[Any]:
        """Each trial's loss (``None`` for a failed one), in trial order."""
        return [r.get("loss") for r in self.results]

    def statuses(self, bandit: Any = None) -> list[Any]:
        """Each trial's status (``"ok"`` or ``"fail"``), in trial order."""
        return [r.get("status") for r in self.results]

    @property
    def best_trial(self) -> dict[str, Any]:
        """The trial with the lowest finite loss among those with status ``"ok"``."""
        return best_trial_of(self._trials)

    @property
    def argmin(self) -> dict[str, Any]:
        """The best trial's hyperopt values (indices for ``choice``), for the parameters it sampled."""
        return {name: values[0] for name, values in self.best_trial["misc"]["vals"].items() if values}

    def __len__(self) -> int:
        return len(self._trials)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._trials)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._trials[index]

    def __repr__(self) -> str:
        return f"<hyperbrace.hyperas.Trials: {len(self)} trials>"

    # -- how trials get in (the hyperopt API the Hyperas layer writes through) ---------------------------------------
    def new_trial_ids(self, n: int) -> list[int]:
        start = max((t["tid"] for t in self._dynamic_trials), default=-1) + 1
        return list(range(start, start + n))

    def new_trial_docs(
        self, tids: Sequence[int], specs: Sequence[Any], results: Sequence[Any], miscs: Sequence[Any]
    ) -> list[dict[str, Any]]:
        return [
            {"state": 0, "tid": tid, "spec": spec, "result": result, "misc": misc, "exp_key": self._exp_key,
             "owner": None, "version": 0, "book_time": None, "refresh_time": None}
            for tid, spec, result, misc in zip(tids, specs, results, miscs)
        ]

    def insert_trial_docs(self, docs: Sequence[dict[str, Any]]) -> list[int]:
        self._dynamic_trials.extend(docs)
        return [doc["tid"] for doc in docs]

    def refresh(self) -> None:
        self._trials = [t for t in self._dynamic_trials if t["exp_key"] == self._exp_key]

    def _names(self) -> list[str]:
        names: list[str] = []
        for misc in self.miscs:
            names.extend(n for n in misc["vals"] if n not in names)
        return names


def completed_by_loss(trials: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trials with status ``"ok"`` and a finite loss, lowest loss first (the earlier trial first among equals)."""
    completed = [t for t in trials if t["result"].get("status") == STATUS_OK and _finite(t["result"].get("loss"))]
    return sorted(completed, key=lambda t: float(t["result"]["loss"]))


def best_trial_of(trials: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The trial with the lowest finite loss among those with status ``"ok"``; raises if there is none."""
    completed = completed_by_loss(trials)
    if not completed:
        raise AllTrialsFailed(
            f"none of the {len(trials)} trials completed with a finite loss, so there is no best trial; each "
            "failed trial's result holds its 'error'"
        )
    return completed[0]


def _finite(loss: Any) -> bool:
    if hasattr(loss, "item") and callable(loss.item):
        loss = loss.item()
    return isinstance(loss, numbers.Real) and not isinstance(loss, bool) and math.isfinite(loss)


def _storable(value: Any) -> bool:
    """Whether hyperopt's document check (BSON, when pymongo is installed) accepts ``value``."""
    if value is None or isinstance(value, (str, bytes, bool, int, float, datetime.datetime)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_storable(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _storable(v) for k, v in value.items())
    return isinstance(value, numbers.Number) and hasattr(value, "item")  # numpy scalars


def record_trials(trials: Any, records: Sequence[TrialRecord], names: Sequence[str]) -> list[dict[str, Any]]:
    """Append ``records`` to ``trials`` (ours, or hyperopt's ``Trials``); returns their trial dicts.

    ``names`` are all the search's parameter names: a trial has ``[]`` in ``misc["vals"]`` for those it did not
    sample, as in hyperopt.
    """
    if not records:
        return []
    tids = trials.new_trial_ids(len(records))
    miscs = []
    for tid, record in zip(tids, records):
        all_names = list(names) + [n for n in record.vals if n not in names]
        miscs.append({
            "tid": tid, "cmd": _CMD, "workdir": None,
            "idxs": {n: [tid] if n in record.vals else [] for n in all_names},
            "vals": {n: [record.vals[n]] if n in record.vals else [] for n in all_names},
            "real_vals": {n: v for n, v in record.real_vals.items() if _storable(v)},
        })
    # Documents go in without values that hyperopt cannot store (the model); the full results are put back after.
    storable_results = [{k: v for k, v in r.result.items() if _storable(v)} for r in records]
    docs = trials.new_trial_docs(tids, [None] * len(records), storable_results, miscs)
    for doc, record in zip(docs, records):
        doc["state"] = JOB_STATE_DONE
        doc["book_time"], doc["refresh_time"] = record.book_time, record.refresh_time
    trials.insert_trial_docs(docs)
    trials.refresh()
    by_tid = {t["tid"]: t for t in trials.trials}
    inserted = []
    for tid, record in zip(tids, records):
        doc = by_tid[tid]
        doc["result"] = record.result
        inserted.append(doc)
    return inserted
