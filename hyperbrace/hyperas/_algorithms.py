"""``algo=``: hyperopt's search algorithms (``tpe.suggest``, ``rand.suggest``, ``anneal.suggest``) mapped onto Optuna.

Scripts pass ``algo=tpe.suggest`` with ``tpe`` from hyperopt or from :mod:`hyperbrace.hyperas`; both work:

========================  ==========================================================================================
hyperopt                  hyperbrace
========================  ==========================================================================================
``tpe.suggest``           Optuna's TPE sampler (multivariate, so it models parameters jointly)
``rand.suggest``          Optuna's random sampler
``anneal.suggest``        Optuna's TPE sampler. hyperopt's annealing samples near the best trials so far, with a
                          shrinking neighbourhood; TPE also concentrates on the region of the best trials, for every
                          kind of parameter, whereas Optuna's one local optimizer (CMA-ES) handles numbers only.
``atpe.suggest``,         Optuna's TPE sampler (adaptive TPE and mixtures are TPE variants)
``mix.suggest``
========================  ==========================================================================================

``functools.partial(tpe.suggest, n_startup_jobs=...)`` is accepted; the partial's settings are not carried over.
hyperbrace's own names (``"tpe"``, ``"random"``, ``"gp"``, ...) and Optuna sampler objects work as well.

>>> from hyperbrace.hyperas import tpe, rand
>>> engine_algorithm(tpe.suggest), engine_algorithm(rand.suggest)
('tpe', 'random')
"""

from __future__ import annotations

import functools
import types
from typing import Any

__all__ = ["Algorithm", "tpe", "rand", "anneal", "engine_algorithm"]

# hyperopt's module -> the sampler hyperbrace runs for it
_HYPEROPT_ALGORITHMS = {"tpe": "tpe", "rand": "random", "anneal": "tpe", "atpe": "tpe", "mix": "tpe"}


class Algorithm:
    """Stands for one of hyperopt's algorithm modules: ``tpe.suggest`` is the value to pass as ``algo``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.engine = _HYPEROPT_ALGORITHMS[name]

    @property
    def suggest(self) -> Algorithm:
        return self

    def __repr__(self) -> str:
        return f"hyperbrace.hyperas.{self.name}.suggest"


tpe = Algorithm("tpe")
rand = Algorithm("rand")
anneal = Algorithm("anneal")


def engine_algorithm(algo: Any) -> Any:
    """hyperbrace's ``algo`` for a Hyperas ``algo`` (our or hyperopt's ``tpe.suggest``...). ``None`` means TPE."""
    if algo is None:
        return "tpe"
    if isinstance(algo, Algorithm):
        return algo.engine
    if isinstance(algo, functools.partial):
        return engine_algorithm(algo.func)
    module = algo.__name__ if isinstance(algo, types.ModuleType) else getattr(algo, "__module__", None) or ""
    package, _, name = module.rpartition(".")
    if package == "hyperopt" and name in _HYPEROPT_ALGORITHMS:
        return _HYPEROPT_ALGORITHMS[name]
    if isinstance(algo, str) or type(algo).__module__.startswith("optuna"):
        return algo  # hyperbrace's own names and Optuna samplers, checked by the core
    raise ValueError(
        f"algo={algo!r} is not a search algorithm hyperbrace knows; pass tpe.suggest, rand.suggest or "
        "anneal.suggest (from hyperopt or hyperbrace.hyperas), a name such as 'tpe' or 'random', or an Optuna sampler"
    )
