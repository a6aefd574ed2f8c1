"""Hyperas, drop-in: run a Hyperas script or notebook on hyperbrace by changing its import lines only.

::

    from hyperbrace.hyperas import optim                                     # was: from hyperas import optim
    from hyperbrace.hyperas.distributions import choice, uniform            # was: from hyperas.distributions ...
    from hyperbrace.hyperas import Trials, STATUS_OK, tpe                    # was: from hyperopt import ...

    best_run, best_model = optim.minimize(model=create_model, data=data, algo=tpe.suggest, max_evals=5,
                                          trials=Trials())

Templates keep hyperopt's meanings (``loguniform(-10, 0)`` is ``exp(uniform(-10, 0))``), parameters get Hyperas'
names, ``best_run`` holds ``choice`` indices unless ``eval_space=True``, and ``data()``'s local variables are
visible in the model. hyperopt's own ``Trials``, ``tpe.suggest`` and ``STATUS_OK`` are accepted too. See
docs/hyperas.md for what behaves better and the differences that remain.

>>> from hyperbrace.hyperas import STATUS_OK, Trials, tpe
>>> STATUS_OK, len(Trials()), tpe.suggest
('ok', 0, hyperbrace.hyperas.tpe.suggest)
"""

from hyperbrace.hyperas import distributions, optim
from hyperbrace.hyperas._algorithms import anneal, rand, tpe
from hyperbrace.hyperas._trials import AllTrialsFailed, Trials
from hyperbrace.hyperas.ensemble import VotingModel
from hyperbrace.trial import STATUS_FAIL, STATUS_OK

__all__ = [
    "optim",
    "distributions",
    "Trials",
    "STATUS_OK",
    "STATUS_FAIL",
    "AllTrialsFailed",
    "tpe",
    "rand",
    "anneal",
    "VotingModel",
]
