"""Known configurations tried first: ``minimize(..., enqueue=[{"lr": 0.001, "units": 512}])``.

Each configuration gives hyperparameters by their real values (as ``best_run`` shows them); this turns them into
the values the engine stores and queues them with Optuna's ``enqueue_trial``, so the first trials run them (and
the sampler learns from them). Inside a ``choice`` of objects, an option is named by its index or by its source
text (``"Dropout(0.5)"``). A configuration already tried, or already queued, is not queued again, so a resumed
search does not repeat them. Names left out are sampled as usual.

>>> from hyperbrace.space import Choice, LogNormal, Uniform
>>> engine_value("units", Choice([256, 512]), 512)
512
>>> round(engine_value("lr", LogNormal(-7, 1), 0.000911882), 3)  # lognormal: the quantile of the value
0.5
>>> engine_value("x", Uniform(0, 1), 2.5)
Traceback (most recent call last):
...
ValueError: enqueue: x=2.5 is outside uniform(0, 1)
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping, Sequence
from typing import Any

import optuna

from hyperbrace.space import Choice, Distribution, LogNormal, Normal, PChoice, QLogNormal

__all__ = ["engine_value", "engine_params", "enqueue_configurations"]


def _normalized(text: str) -> str:
    """Source text as the template compiler writes it (``dict(kind="conv")`` -> ``dict(kind='conv')``)."""
    try:
        return ast.unparse(ast.parse(text, mode="eval"))
    except SyntaxError:
        return text


def _choice_index(name: str, dist: Choice, value: Any) -> int:
    if isinstance(value, str):
        text = _normalized(value)
        for index, option in enumerate(dist._values):
            if not isinstance(option, str) and _normalized(repr(option)) == text:
                return index  # an object option named by its source text
    for index, option in enumerate(dist._values):
        if option is value or (type(option) is type(value) and option == value):
            return index
        if isinstance(value, str) and not isinstance(option, str) and repr(option) == value:
            return index  # an object option named by its source text
    if dist.by_index and isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(dist.options):
        if not any(isinstance(o, int) and not isinstance(o, bool) for o in dist._values):
            return value  # an object option named by its index
    raise ValueError(f"enqueue: {name}={value!r} is not one of {dist!r}; give an option's value, its source text, "
                     "or (for objects) its index")


def engine_value(name: str, dist: Distribution, value: Any) -> Any:
    """The engine's stored value that makes ``dist`` give ``value``."""
    if isinstance(dist, PChoice):
        index = _choice_index(name, dist, value)
        low = dist._cumulative[index - 1] if index else 0.0
        return (low + dist._cumulative[index]) / 2
    if isinstance(dist, Choice):
        index = _choice_index(name, dist, value)
        return index if dist.by_index else dist._values[index]
    if isinstance(dist, Normal):
        real = float(value)
        if isinstance(dist, (LogNormal, QLogNormal)):
            if real <= 0:
                raise ValueError(f"enqueue: {name}={value!r}: {dist!r} gives only values > 0")
            real = math.log(real)
        return dist._normal.cdf(real)
    engine = dist.engine_distribution()
    try:
        inside = engine._contains(engine.to_internal_repr(value))
    except (TypeError, ValueError):
        inside = False
    if not inside:
        raise ValueError(f"enqueue: {name}={value!r} is outside {dist!r}")
    return value


def engine_params(sites: Sequence[Any], configuration: Mapping[str, Any]) -> dict[str, Any]:
    """A configuration of real values (by hyperparameter name) as the engine's values."""
    by_name = {site.name: site for site in sites}
    params = {}
    for name, value in configuration.items():
        site = by_name.get(name)
        if site is None:
            raise ValueError(f"enqueue: the model has no hyperparameter {name!r}; its names are "
                             f"{', '.join(sorted(by_name))}")
        if site.static_distribution is None:
            raise ValueError(f"enqueue: {name!r}'s distribution is computed when the model runs, so a value for it "
                             "cannot be checked beforehand; leave it out (it is then sampled)")
        params[name] = engine_value(name, site.static_distribution, value)
    return params


def enqueue_configurations(study: optuna.Study, sites: Sequence[Any],
                           configurations: Sequence[Mapping[str, Any]]) -> int:
    """Queue each configuration not tried or queued yet; returns how many were queued now."""
    if isinstance(configurations, Mapping):
        raise TypeError("enqueue= takes a list of configurations (dicts), e.g. enqueue=[{'lr': 0.001}]")
    before = len(study.get_trials(deepcopy=False))
    for configuration in configurations:
        study.enqueue_trial(engine_params(sites, configuration), skip_if_exists=True)
    return len(study.get_trials(deepcopy=False)) - before
