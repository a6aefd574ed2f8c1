"""``algo=`` and ``prune=``: names for Optuna's samplers and pruners, with the settings that suit templates.

>>> make_sampler("random", seed=1).__class__.__name__
'RandomSampler'
>>> make_pruner(None).__class__.__name__
'NopPruner'
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import optuna

from hyperbrace.template import TemplateSite

__all__ = ["SAMPLERS", "PRUNERS", "make_sampler", "make_pruner", "grid_space", "reseed"]

SAMPLERS = ("tpe", "random", "gp", "cmaes", "grid", "qmc")
PRUNERS = ("asha", "hyperband", "median", None)


def grid_space(sites: Sequence[TemplateSite]) -> dict[str, list[Any]]:
    """Every parameter's finite list of values, for ``algo="grid"``; raises where the space is not finite."""
    space: dict[str, list[Any]] = {}
    for site in sites:
        grid = site.static_distribution.grid() if site.static_distribution is not None else None
        if site.dynamic_name or grid is None:
            why = (
                "its name is computed in the trial" if site.dynamic_name
                else f"{site.distribution} is continuous, or its arguments are only known in the trial"
            )
            raise site.error(
                f"algo='grid' needs a finite list of values for every template, and {why}. Use choice, randint, "
                "uniformint or quniform with literal arguments, or another algo (tpe, random)"
            )
        space[site.name] = grid
    return space


class _AskTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its ``study.stop()`` once the grid is used up.

    ``study.stop()`` works only inside ``study.optimize()``: with ask and tell, as hyperbrace runs trials, it raises
    ``RuntimeError`` after the last grid point is stored (a documented Optuna limitation, optuna/optuna#5141), which
    would end every grid search with an error. The search ends by itself: ``minimize`` caps ``max_evals`` at the
    size of the grid.
    """

    def after_trial(self, study: optuna.Study, trial: Any, state: Any, values: Any) -> None:
        pass


def make_sampler(
    algo: Any, seed: int | None = None, sites: Sequence[TemplateSite] = (), parallel: bool = False
) -> optuna.samplers.BaseSampler:
    """The Optuna sampler for ``algo``: a name in :data:`SAMPLERS`, or a sampler instance (used as is)."""
    if isinstance(algo, optuna.samplers.BaseSampler):
        if type(algo) is optuna.samplers.GridSampler:
            algo.__class__ = _AskTellGridSampler  # the same object and grid, minus the stop() that raises here
        return algo
    name = getattr(algo, "__name__", algo)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        if name == "tpe":
            # Multivariate TPE models parameters jointly; group=True lets it do so for conditional (define-by-run)
            # spaces; the constant liar keeps parallel workers from all trying the same point.
            return optuna.samplers.TPESampler(
                seed=seed, multivariate=True, group=True, constant_liar=parallel
            )
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "gp":
            try:
                return optuna.samplers.GPSampler(seed=seed)
            except ImportError as exc:
                raise ImportError(f"algo='gp' needs PyTorch and SciPy ({exc}); pip install torch scipy") from None
        if name == "cmaes":
            try:
                import cmaes  # noqa: F401
            except ImportError:
                raise ImportError("algo='cmaes' needs the cmaes package: pip install cmaes") from None
            return optuna.samplers.CmaEsSampler(seed=seed)
        if name == "qmc":
            return optuna.samplers.QMCSampler(seed=seed)
        if name == "grid":
            return _AskTellGridSampler(grid_space(sites), seed=seed)
    raise ValueError(f"algo={algo!r} is not a known search algorithm; use one of {SAMPLERS} or an Optuna sampler")


def _random_states(obj: Any, seen: set[int], depth: int = 0) -> Iterator[Any]:
    """The NumPy random generators inside a sampler (and the samplers it holds), in a fixed order."""
    import numpy

    if id(obj) in seen or depth > 4:
        return
    seen.add(id(obj))
    if isinstance(obj, numpy.random.RandomState):
        yield obj
        return
    if isinstance(obj, optuna.samplers._lazy_random_state.LazyRandomState):
        if obj._rng is not None:  # not drawn from yet and unseeded: each process seeds it itself (OS entropy)
            yield obj._rng
        return
    if isinstance(obj, optuna.samplers.BaseSampler):
        for name in sorted(vars(obj)):
            yield from _random_states(vars(obj)[name], seen, depth + 1)


def reseed(sampler: optuna.samplers.BaseSampler, *salt: object) -> optuna.samplers.BaseSampler:
    """Give ``sampler``'s random generators new seeds, derived from their current state and ``salt``.

    A sampler instance given to a search with several workers is copied into each of them, random state included,
    so without this every worker would draw the same configurations. Reseeded with the worker's index and the
    search's resume point as ``salt``, each worker gets its own stream, and a seeded sampler stays reproducible
    (Optuna's own ``reseed_rng()`` seeds from the operating system's entropy instead).

    >>> a = reseed(optuna.samplers.RandomSampler(seed=0), 1, 0)
    >>> b = reseed(optuna.samplers.RandomSampler(seed=0), 1, 0)
    >>> c = reseed(optuna.samplers.RandomSampler(seed=0), 2, 0)
    >>> a._rng.rng.rand() == b._rng.rng.rand() != c._rng.rng.rand()
    True
    """
    states = list(_random_states(sampler, set()))
    digest = hashlib.sha256(repr(salt).encode())
    for state in states:
        kind, keys, position, *_ = state.get_state()
        digest.update(f"{kind}:{position}:".encode() + keys.tobytes())
    base = digest.hexdigest()
    for i, state in enumerate(states):
        state.seed(int(hashlib.sha256(f"{base}:{i}".encode()).hexdigest()[:8], 16))
    return sampler


def make_pruner(prune: Any) -> optuna.pruners.BasePruner:
    """The Optuna pruner for ``prune``: a name in :data:`PRUNERS`, or a pruner instance (used as is).

    Steps are epochs (the Keras integration reports epoch 1, 2, ...), and the settings assume that:

    * ``"median"``: stop a trial whose value is worse than the median of earlier trials at the same epoch, once 5
      trials have finished and from its second epoch on;
    * ``"asha"``: asynchronous successive halving: at epochs 1, 3, 9, 27, ... only the best third of the trials
      that reached that epoch go on. It waits for one trial to finish, to learn how long a full trial is;
    * ``"hyperband"``: several successive-halving brackets of different aggressiveness. Each bracket's trials are
      sampled from that bracket's own history, so a model-based ``algo`` (TPE) learns from fewer trials;
    * ``None``: never prune.

    >>> make_pruner("asha").__class__.__name__
    'SuccessiveHalvingPruner'
    """
    if isinstance(prune, optuna.pruners.BasePruner):
        return prune
    if prune is None or prune is False:
        return optuna.pruners.NopPruner()
    if prune == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource="auto", reduction_factor=3)
    if prune == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource="auto", reduction_factor=3)
    if prune == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    raise ValueError(f"prune={prune!r} is not a known pruner; use one of {PRUNERS} or an Optuna pruner")
