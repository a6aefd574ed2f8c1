"""Versions of a study: a search whose space changed goes on as a new version, warm-started by the old trials.

Each distinct space of a study is a *version*, an ordinary Optuna study in the same storage: version 1 is the
study itself (``digits.create_model``), version ``k`` is ``digits.create_model@v<k>``. Each records its space
(names, distributions, file:line), its number, the study it is a version of and what changed since the previous
one (user attributes ``hyperbrace.fingerprint``, ``hyperbrace.version``, ``hyperbrace.root``, ``hyperbrace.changes``).

When ``minimize`` resumes a study and the templates differ from the latest version's, it says per name what
changed and, by ``on_space_change``:

* ``"reuse"`` (default): starts the next version, and adds to it every earlier trial that fits the new space
  (:mod:`hyperbrace.versions.reuse`) as a finished trial marked ``hb.reused_from``: the sampler learns from them,
  they are never run again, never count towards ``max_evals`` and are not shown as trials of the new version;
* ``"fresh"``: starts the next version with nothing reused (a search from scratch; the old versions stay);
* ``"continue"``: keeps one study: the latest version goes on with the new templates, its trials count, and
  ``best_run`` may come from either space (refused where Optuna cannot mix them: changed options of a
  ``choice``, or another kind of distribution);
* ``"error"``: stops with the list of changes, before anything runs.

The earlier versions are never written to again, so their trials, models and logs stay as they were. A version
keeps its models and logs in ``<run dir>/v<k>/`` (version 1: the run directory itself, as before versions).

>>> import tempfile, warnings
>>> from hyperbrace import minimize
>>> directory = tempfile.mkdtemp()
>>> def objective():
...     x = {{uniform(-4, 4)}}
...     return (x - 1) ** 2
>>> first = minimize(objective, max_evals=8, seed=0, directory=directory, show_progress=False)
>>> def objective():  # the range narrowed around the best: a new version, warm-started by what fits
...     x = {{uniform(0, 2)}}
...     return (x - 1) ** 2
>>> with warnings.catch_warnings(record=True) as caught:
...     second = minimize(objective, max_evals=4, seed=0, directory=directory, show_progress=False)
>>> print(str(caught[0].message).splitlines()[1])  # doctest: +ELLIPSIS
  x: range changed, uniform(-4, 4) -> uniform(0, 2)  (...)
>>> [(v.version, v.study_name, v.trials) for v in second.versions]
[(1, 'objective', 8), (2, 'objective@v2', 4)]
>>> len(second.trials), len(second.reused) == second.versions[1].reused
(4, True)
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import check_distribution_compatibility, json_to_distribution

from hyperbrace._warnings import user_stacklevel
from hyperbrace.budget import budget_lock, count_used, is_reused, may_be_best
from hyperbrace.metric import METRIC_ATTR
from hyperbrace.prune_on import PRUNE_ON_ATTR
from hyperbrace.samplers import AutoSampler
from hyperbrace.versions.fingerprint import (
    LEGACY_ATTR, SPACE_ATTR, Change, Param, changes, space_from_json, space_of, space_to_json,
)
from hyperbrace.versions.reuse import reusable_trials

if TYPE_CHECKING:
    from hyperbrace.search import SearchPlan

__all__ = [
    "ON_SPACE_CHANGE", "SpaceChanged", "SpaceChangedError", "StudyVersion", "open_version", "study_versions",
    "latest_version_name", "root_name", "version_name", "version_number", "grouped_studies",
]

#: The values ``minimize(on_space_change=...)`` takes.
ON_SPACE_CHANGE = ("reuse", "fresh", "continue", "error")
ROOT_ATTR = "hyperbrace.root"
VERSION_ATTR = "hyperbrace.version"
CHANGES_ATTR = "hyperbrace.changes"
REUSED_COUNT_ATTR = "hyperbrace.reused"

#: Sampler classes that learn from trials lacking some parameters (define-by-run), so partial reused trials help
#: them; others (GP, CMA-ES) model only the parameters every trial has, and get whole configurations only.
#: AutoSampler takes TPE for a study whose trials asked for different parameters, so partial trials suit it too.
_PARTIAL_FRIENDLY = (optuna.samplers.TPESampler, optuna.samplers.RandomSampler, AutoSampler)


class SpaceChanged(UserWarning):
    """A resumed study's templates changed: the search goes on as a new version (or as asked)."""


class SpaceChangedError(ValueError):
    """A resumed study's templates changed and ``on_space_change="error"`` (or a change ``"continue"`` cannot
    take) stopped the search before anything ran."""


@dataclass(frozen=True)
class StudyVersion:
    """One version of a study, as ``result.versions`` and ``hyperbrace show`` list them."""

    version: int
    study_name: str  #: the Optuna study (``optuna.load_study(study_name=..., storage=...)`` opens it)
    trials: int  #: its own trials (as counted towards ``max_evals``)
    reused: int  #: trials it reused from earlier versions
    best_loss: float | None
    changes: tuple[str, ...]  #: what changed since the previous version


def version_name(root: str, number: int) -> str:
    """The study name of version ``number`` of the study ``root``.

    >>> version_name("mnist.create_model", 1), version_name("mnist.create_model", 3)
    ('mnist.create_model', 'mnist.create_model@v3')
    """
    return root if number == 1 else f"{root}@v{number}"


def root_name(study: optuna.Study) -> str:
    """The name of the study that ``study`` is a version of (its own name for version 1)."""
    return study.user_attrs.get(ROOT_ATTR, study.study_name)


def _versions(storage: optuna.storages.BaseStorage, name: str) -> tuple[str, list[optuna.study._frozen.FrozenStudy]]:
    """The root name for ``name`` (a study's name or one of its versions'), and its versions in order."""
    studies = {s.study_name: s for s in storage.get_all_studies()}
    given = studies.get(name)
    root = given.user_attrs.get(ROOT_ATTR, name) if given is not None else name
    pattern = re.compile(re.escape(root) + r"@v(\d+)")
    found: list[tuple[int, optuna.study._frozen.FrozenStudy]] = []
    if root in studies:
        found.append((1, studies[root]))
    for study_name, frozen in studies.items():
        match = pattern.fullmatch(study_name)
        if match and frozen.user_attrs.get(ROOT_ATTR) == root:
            found.append((int(match.group(1)), frozen))
    return root, [frozen for _, frozen in sorted(found, key=lambda pair: pair[0])]


def version_number(study: Any) -> int:
    """Which version of its study ``study`` (an Optuna ``Study`` or ``FrozenStudy``) is: 1 for the first.

    >>> import optuna
    >>> version_number(optuna.create_study())
    1
    """
    return int(study.user_attrs.get(VERSION_ATTR, 1))


_number = version_number


def grouped_studies(storage: optuna.storages.BaseStorage) -> dict[str, list[optuna.study._frozen.FrozenStudy]]:
    """Every study in ``storage``, grouped by the study they are versions of: root name -> its versions, oldest
    first (a study never run with another space is a group of one). One read of the storage's study list.

    >>> import optuna
    >>> storage = optuna.storages.InMemoryStorage()
    >>> for name in ("a", "a@v2", "b"):
    ...     study = optuna.create_study(study_name=name, storage=storage)
    >>> study = optuna.load_study(study_name="a@v2", storage=storage)
    >>> study.set_user_attr(ROOT_ATTR, "a"); study.set_user_attr(VERSION_ATTR, 2)
    >>> {root: [v.study_name for v in versions] for root, versions in grouped_studies(storage).items()}
    {'a': ['a', 'a@v2'], 'b': ['b']}
    """
    groups: dict[str, list[optuna.study._frozen.FrozenStudy]] = {}
    for frozen in storage.get_all_studies():
        groups.setdefault(frozen.user_attrs.get(ROOT_ATTR, frozen.study_name), []).append(frozen)
    return {root: sorted(groups[root], key=version_number) for root in sorted(groups)}


def _space(frozen: Any) -> dict[str, Param] | None:
    return space_from_json(frozen.user_attrs.get(SPACE_ATTR), frozen.user_attrs.get(LEGACY_ATTR))


def latest_version_name(storage: optuna.storages.BaseStorage, name: str) -> str:
    """The study name of the latest version of ``name`` (``name`` itself if it has no other version)."""
    _, versions = _versions(storage, name)
    return versions[-1].study_name if versions else name


def study_versions(storage: optuna.storages.BaseStorage, name: str) -> list[StudyVersion]:
    """Every version of the study ``name`` (or of the study whose version ``name`` is), oldest first."""
    _, versions = _versions(storage, name)
    listed = []
    for frozen in versions:
        trials = storage.get_all_trials(frozen._study_id, deepcopy=False)
        best = [t.value for t in trials if may_be_best(t) and math.isfinite(t.value)]
        listed.append(StudyVersion(
            version=_number(frozen), study_name=frozen.study_name, trials=count_used(trials),
            reused=sum(1 for t in trials if is_reused(t)), best_loss=min(best) if best else None,
            changes=tuple(frozen.user_attrs.get(CHANGES_ATTR, ())),
        ))
    return listed


def _for_version(plan: SearchPlan, study_name: str, number: int) -> SearchPlan:
    settings = dataclasses.replace(plan.settings, version_dir="" if number == 1 else f"v{number}")
    return dataclasses.replace(plan, study_name=study_name, settings=settings)


def _record(study: optuna.Study, root: str, number: int, space: dict[str, Param], found: list[Change]) -> None:
    study.set_user_attr(SPACE_ATTR, space_to_json(space))
    study.set_user_attr(ROOT_ATTR, root)
    study.set_user_attr(VERSION_ATTR, number)
    if found:
        study.set_user_attr(CHANGES_ATTR, [str(change) for change in found])


def open_version(plan: SearchPlan, on_space_change: str = "reuse") -> tuple[SearchPlan, optuna.Study]:
    """Open the version of ``plan``'s study that matches its model's space, creating (and warm-starting) a new
    version if the space changed. Returns the plan for that version (its study name and model folder) and the
    study. Warns with :class:`SpaceChanged` saying what changed; raises :class:`SpaceChangedError` where asked."""
    if on_space_change not in ON_SPACE_CHANGE:
        raise ValueError(
            f"on_space_change={on_space_change!r}: use 'reuse' (a new version, warm-started by the earlier trials "
            "that fit), 'fresh' (a new version from scratch), 'continue' (the same study goes on) or 'error'"
        )
    space = space_of(plan.model)
    storage = plan.storage.open()
    # One process creates a new version and fills it; another starting at once waits here, then finds it made.
    with budget_lock(plan.storage.budget_lock_path, plan.storage.url):
        root, versions = _versions(storage, plan.study_name)
        if not versions:
            study = plan.open_study(storage=storage)
            _record(study, root, 1, space, [])
            return _for_version(plan, study.study_name, 1), study
        latest = versions[-1]
        number = _number(latest)
        recorded = _space(latest)
        found = [] if recorded is None else changes(recorded, space)
        if not found:
            version_plan = _for_version(plan, latest.study_name, number)
            study = version_plan.open_study(storage=storage)
            if SPACE_ATTR not in latest.user_attrs:
                _record(study, root, number, space, [])
            return version_plan, study
        listing = "\n".join(f"  {change}" + (f"  ({change.after.where})" if change.after and change.after.where
                                             else "") for change in found)
        head = (f"search {root!r}: the {{{{...}}}} templates changed since version {number} "
                f"({latest.study_name!r}):\n{listing}\n")
        if on_space_change == "error":
            raise SpaceChangedError(
                f"{head}on_space_change='error' stops here. Pass on_space_change='reuse' to go on as version "
                f"{number + 1}, warm-started by the earlier trials that fit, 'fresh' to start version {number + 1} "
                "from scratch, or 'continue' to go on in the same study"
            )
        if on_space_change == "continue":
            _check_mixable(found, head)
            version_plan = _for_version(plan, latest.study_name, number)
            study = version_plan.open_study(storage=storage)
            study.set_user_attr(SPACE_ATTR, space_to_json(space))
            study.set_user_attr(CHANGES_ATTR, [*latest.user_attrs.get(CHANGES_ATTR, ()), *map(str, found)])
            warnings.warn(
                f"{head}on_space_change='continue': the trials go on in the same study, mixed with the earlier "
                "ones (they count towards max_evals, and best_run may come from either space)",
                SpaceChanged, stacklevel=user_stacklevel(),
            )
            return version_plan, study
        number += 1
        version_plan = _for_version(plan, version_name(root, number), number)
        study = version_plan.open_study(storage=storage)
        _record(study, root, number, space, found)
        if METRIC_ATTR in latest.user_attrs:  # a maximize() search: the new version maximizes the same metric
            study.set_user_attr(METRIC_ATTR, latest.user_attrs[METRIC_ATTR])
        if PRUNE_ON_ATTR in latest.user_attrs:  # the metric prune_on="auto" learnt: the model returns the same one
            study.set_user_attr(PRUNE_ON_ATTR, latest.user_attrs[PRUNE_ON_ATTR])
        note = "nothing reused (on_space_change='fresh')"
        if on_space_change == "reuse":
            run_dir = plan.storage.run_dir
            partial = isinstance(study.sampler, _PARTIAL_FRIENDLY)
            trials, looked_at = reusable_trials(
                storage, [(_number(v), v.study_name, _space(v)) for v in versions], space, partial=partial,
                keep_model=lambda path: (run_dir / path).exists(),
            )
            study.add_trials(trials)
            study.set_user_attr(REUSED_COUNT_ATTR, len(trials))
            note = (f"{len(trials)} of {looked_at} earlier completed trials fit the new space and warm-start it "
                    "(reused: not run again, not counted in max_evals)")
        warnings.warn(
            f"{head}Going on as version {number}, study {study.study_name!r} (the earlier versions are kept as "
            f"they are): {note}. on_space_change= 'fresh' starts it from scratch, 'continue' keeps one study, "
            "'error' stops instead.",
            SpaceChanged, stacklevel=user_stacklevel(),
        )
        return version_plan, study


def _check_mixable(found: list[Change], head: str) -> None:
    """``continue`` mixes both spaces in one Optuna study: refuse what Optuna (or the stored values) cannot mix."""
    for change in found:
        if change.before is None or change.after is None:
            continue
        problem = None
        if change.what == "distribution":
            problem = "its distribution changed kind, so the stored values mean something else"
        elif change.before.engine and change.after.engine:
            try:
                check_distribution_compatibility(
                    json_to_distribution(change.before.engine), json_to_distribution(change.after.engine)
                )
            except ValueError as exc:
                problem = f"Optuna cannot keep both in one study ({exc})"
        if problem is not None:
            raise SpaceChangedError(
                f"{head}on_space_change='continue' cannot go on in the same study: {change.name}: {problem}. "
                "Use on_space_change='reuse' (the default: a new version, warm-started by the trials that fit)"
            )
