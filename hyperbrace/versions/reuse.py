"""Warm start: the earlier trials that fit a new space, given to the new version's sampler as finished trials.

A trial of an earlier version is reused when every parameter it sampled that the new space still has fits it:

* the same distribution: its stored value is kept as is;
* the same kind with other arguments (a range, the options, a prior's parameters): its real value (``hb.values``)
  is looked up in the new distribution, and the trial is left out if the value lies outside it;
* a parameter whose template was removed is dropped; one whose distribution changed kind (``uniform`` ->
  ``loguniform``) is dropped too, as if removed and added: its old value says nothing about the new prior.

A reused trial that lacks a parameter of the new space (an added template, or one dropped for its new kind) is
*partial*: it informs the sampler (TPE handles trials with missing parameters, as in any conditional space) but
cannot be the best run, which must be a whole configuration of the new space.

>>> from hyperbrace.space import choice, quniform, uniform
>>> raw_for(uniform(0.2, 0.5), 0.3), raw_for(uniform(0.2, 0.5), 0.9) is OUTSIDE
(0.3, True)
>>> raw_for(choice([16, 256]), 256), raw_for(choice([16, 256]), 64) is OUTSIDE
(256, True)
>>> raw_for(quniform(0, 1, 0.25), 0.75), raw_for(quniform(0, 1, 0.5), 0.75) is OUTSIDE
(0.75, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, IntDistribution, distribution_to_json
from optuna.trial import FrozenTrial, TrialState

from hyperbrace.budget import REUSED_ATTR, is_reused
from hyperbrace.space import Choice, Distribution, Normal, PChoice
from hyperbrace.versions.fingerprint import Param

__all__ = ["raw_for", "translate", "reusable_trials", "OUTSIDE"]

#: What :func:`raw_for` returns for a value that the distribution cannot give.
OUTSIDE: Any = type("Outside", (), {"__repr__": lambda self: "OUTSIDE"})()


def raw_for(dist: Distribution, value: Any) -> Any:
    """The engine value for which ``dist`` gives ``value`` (a trial's recorded real value), or :data:`OUTSIDE`."""
    engine = dist.engine_distribution()
    if isinstance(dist, PChoice):
        edges = [0.0, *dist._cumulative]
        for index, probability in enumerate(dist.probabilities):
            raw = (edges[index] + edges[index + 1]) / 2  # the middle of the option's slice of [0, 1)
            if probability > 0 and dist.index_of(raw) == index and _same(dist.record(raw), value):
                return raw
        return OUTSIDE
    if isinstance(dist, Choice):
        return next((raw for raw in engine.choices if _same(dist.record(raw), value)), OUTSIDE)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return OUTSIDE
    if isinstance(dist, Normal):  # the engine stores the quantile of the (log) value
        x = value
        if dist.name in ("lognormal", "qlognormal"):
            if value <= 0:
                return OUTSIDE
            x = math.log(value)
        raw = min(max(dist._normal.cdf(x), 1e-12), 1 - 1e-12)
    elif isinstance(engine, IntDistribution):
        if float(value) != int(value):
            return OUTSIDE
        raw = int(value)
    else:
        raw = float(value)
    if not engine._contains(engine.to_internal_repr(raw)):
        return OUTSIDE
    if not math.isclose(dist.to_value(raw), value, rel_tol=1e-9, abs_tol=1e-12):
        return OUTSIDE
    return raw


def _same(a: Any, b: Any) -> bool:
    # 1, 1.0 and True are equal in Python but different options; a tuple comes back from JSON as a list.
    if isinstance(a, tuple):
        a = list(a)
    if isinstance(b, tuple):
        b = list(b)
    return type(a) is type(b) and a == b


def _template_of(space: dict[str, Param], name: str, distribution: BaseDistribution | None) -> Param | None:
    param = space.get(name)
    if param is not None and not param.dynamic:
        return param
    candidates = [p for p in space.values() if p.dynamic and p.matches(name)]
    if len(candidates) > 1 and distribution is not None:
        engine = distribution_to_json(distribution)
        candidates = [p for p in candidates if p.engine == engine] or candidates
    return candidates[0] if len(candidates) == 1 else None


def translate(
    trial: FrozenTrial, old: dict[str, Param], new: dict[str, Param], source: dict[str, Any],
    keep_model: Callable[[str], bool] = lambda path: False,
) -> FrozenTrial | None:
    """``trial`` (a COMPLETE trial of the version whose space is ``old``) as a trial of the space ``new``, or
    ``None`` if it does not fit. ``source`` is recorded in the copy's ``hb.reused_from`` attribute (with
    ``complete``: whether the copy holds every parameter of the new space); ``keep_model(path)`` says whether the
    copy may point at the original's saved model."""
    values = trial.user_attrs.get("hb.values", {})
    params: dict[str, Any] = {}
    distributions: dict[str, BaseDistribution] = {}
    complete = all(name in old for name in new)
    for name, raw in trial.params.items():
        before = _template_of(old, name, trial.distributions.get(name))
        after = None if before is None else new.get(before.name)
        if after is None:
            continue  # its template was removed
        if before.same_as(after):
            dist = after.object.engine_distribution() if after.object is not None else trial.distributions[name]
            if not dist._contains(dist.to_internal_repr(raw)):
                return None
        elif before.kind != after.kind or before.dynamic != after.dynamic or after.object is None:
            complete = False  # another kind of distribution: a new parameter, which this trial never sampled
            continue
        else:
            if name not in values:
                return None
            raw = raw_for(after.object, values[name])
            if raw is OUTSIDE:
                return None
            dist = after.object.engine_distribution()
        params[name], distributions[name] = raw, dist
    if not params and trial.params:
        return None  # nothing of it is left to learn from
    attrs = {k: v for k, v in trial.user_attrs.items() if k not in ("hb.worker", "hb.model", "hb.values")}
    attrs["hb.values"] = {name: values[name] for name in params if name in values}
    model = trial.user_attrs.get("hb.model")
    if complete and model is not None and keep_model(model):
        attrs["hb.model"] = model  # the earlier version's file: best_model of the new version may be this one
    attrs[REUSED_ATTR] = {**source, "trial": trial.number, "complete": complete}
    try:
        copy = optuna.trial.create_trial(
            value=trial.value, params=params, distributions=distributions, user_attrs=attrs,
            intermediate_values=dict(trial.intermediate_values),
        )
    except ValueError:
        return None
    copy.datetime_start, copy.datetime_complete = trial.datetime_start, trial.datetime_complete
    return copy


def reusable_trials(
    storage: optuna.storages.BaseStorage, versions: list[tuple[int, str, dict[str, Param] | None]],
    new: dict[str, Param], *, partial: bool = True, keep_model: Callable[[str], bool] = lambda path: False,
) -> tuple[list[FrozenTrial], int]:
    """The trials of the earlier ``versions`` (number, study name, space) that fit ``new``, and how many were
    looked at. Each version gives its own trials (not those it reused itself: they come from their own version).
    ``partial=False`` leaves out trials that lack a parameter of the new space."""
    found: list[FrozenTrial] = []
    looked_at = 0
    for number, study_name, space in versions:
        if space is None:
            continue  # a study hyperbrace did not record a space for: its parameters cannot be matched
        study_id = storage.get_study_id_from_name(study_name)
        for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.COMPLETE,)):
            if is_reused(trial) or trial.value is None or not math.isfinite(trial.value):
                continue
            looked_at += 1
            copy = translate(trial, space, new, {"study": study_name, "version": number}, keep_model)
            if copy is not None and (partial or copy.user_attrs[REUSED_ATTR]["complete"]):
                found.append(copy)
    return found, looked_at
