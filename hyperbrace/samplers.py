"""``algo=`` and ``prune=``: names for Optuna's samplers and pruners, with the settings that suit templates.

>>> make_sampler("random", seed=1).__class__.__name__
'RandomSampler'
>>> make_pruner(None).__class__.__name__
'NopPruner'

Why the defaults are what they are (``algo="auto"``, ``prune="asha"``): docs/search.md, with the measurements in
benchmarks/results/sampler_tables.md and benchmarks/results/race.md.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import optuna

from hyperbrace.template import TemplateSite

__all__ = ["SAMPLERS", "PRUNERS", "AutoSampler", "make_sampler", "make_pruner", "grid_space", "reseed"]

#: Past this many finished trials ``algo="auto"`` leaves the GP for TPE: a GP suggestion costs O(n^3) in the
#: trials (0.1-0.4 CPU s at 100 trials here, seconds at several hundred), TPE's stays near constant.
GP_MAX_TRIALS = 250

SAMPLERS = ("auto", "tpe", "random", "gp", "cmaes", "grid", "qmc")
PRUNERS = ("asha", "hyperband", "median", None)


class EpochScaledASHA(optuna.pruners.SuccessiveHalvingPruner):
    """Asynchronous successive halving whose first rung is a ninth of a full trial's epochs (at least 1).

    With reduction factor 3 the rungs are ``r, 3r, 9r`` for ``r = round(epochs / 9)``: 15-epoch trials are judged
    after epochs 2 and 6, 30-epoch trials after 3, 9 and 27, 100-epoch trials after 11, 33 and 99. A trial goes
    on past a rung only if it is in the best third of the trials that reached it. Tying the first rung to the
    epoch count keeps the warm-up at about 11% of training, where Optuna's ``min_resource="auto"`` (a hundredth)
    judges everything after one epoch, which costs slow starters (SGD, low learning rates) their chance. Expected
    epochs per trial: about 1/3.5 (15 epochs) to 1/4.2 (30 epochs) of full training.

    A full trial's length is learnt from the first completed trial; until one completes, nothing is pruned. A trial
    that has reached that length is never pruned: its training is done, and pruning it would throw the work away
    (with 9, 18, 27, ... epochs the last rung falls on the last epoch).

    >>> EpochScaledASHA().first_rung(15), EpochScaledASHA().first_rung(30), EpochScaledASHA().first_rung(5)
    (2, 3, 1)
    """

    def __init__(self, reduction_factor: int = 3) -> None:
        super().__init__(min_resource="auto", reduction_factor=reduction_factor)
        self._full_length: int | None = None

    @staticmethod
    def first_rung(epochs: int) -> int:
        return max(1, round(epochs / 9))

    def prune(self, study: optuna.Study, trial: Any) -> bool:
        if self._full_length is None:
            steps = [t.last_step for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                     if t.last_step is not None]
            if not steps:
                return False
            self._full_length = max(steps)
            self._min_resource = self.first_rung(self._full_length)
        if trial.last_step is not None and trial.last_step >= self._full_length:
            return False
        return super().prune(study, trial)


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


class AutoSampler(optuna.samplers.BaseSampler):
    """``algo="auto"``: for each new trial, Optuna's GP sampler or its multivariate TPE, whichever the
    measurements favour for the study as it stands (benchmarks/results/sampler_tables.md, docs/search.md):

    * TPE once the study has pruned trials: Optuna's GP learns from completed trials only, so with a pruner that
      stops most trials it would model a handful of points, while TPE also learns from where trials were pruned;
    * TPE for conditional spaces (trials asked for different parameters, or a template's name is computed in the
      trial): TPE (``group=True``) models each branch on its own, the GP only the parameters every trial has;
    * TPE for parallel searches (``n_jobs > 1``: the constant liar spreads workers; Optuna's GP has no batch
      acquisition) and past :data:`GP_MAX_TRIALS` finished trials (the GP's cost grows with the cube of the
      trials);
    * the GP otherwise: sequential searches over numeric, mixed or categorical spaces, where it ranked ahead of
      TPE at 20, 50 and 100 trials on the tables (TPE was ahead at 20 trials on two of the three all-categorical
      NAS-Bench-201 tables, the GP at 50 and 100 on all three).

    Both start with 10 random trials, from different seeds (with one seed, TPE taking over would replay them).
    Every choice is recorded in the trial's system attributes (``hyperbrace.sampler``), so a study shows which
    sampler proposed what.

    >>> import optuna
    >>> sampler = AutoSampler(seed=0)
    >>> study = optuna.create_study(sampler=sampler)
    >>> study.optimize(lambda t: (t.suggest_float("x", -2, 2) - 1) ** 2, n_trials=12)
    >>> study.trials[-1].system_attrs["hyperbrace.sampler"]
    'gp'
    """

    def __init__(
        self, seed: int | None = None, sites: Sequence[TemplateSite] = (), parallel: bool = False
    ) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # Another seed than the GP's: both begin with random start-up trials, and with one seed TPE, taking over
            # after the first pruned trial, would replay the configurations the GP's start-up already tried.
            tpe_seed = None if seed is None else (seed + 1) % 2**32
            self._tpe = optuna.samplers.TPESampler(seed=tpe_seed, multivariate=True, group=True,
                                                   constant_liar=parallel)
            self._gp = optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)
        self._static_tpe = parallel or any(site.dynamic_name for site in sites)
        self._chosen: dict[int, optuna.samplers.BaseSampler] = {}

    def choose(self, study: optuna.Study) -> str:
        """``"tpe"`` or ``"gp"``: the sampler the next trial of ``study`` gets."""
        if self._static_tpe:
            return "tpe"
        trials = study.get_trials(deepcopy=False)
        finished = [t for t in trials if t.state.is_finished()]
        if len(finished) >= GP_MAX_TRIALS or any(t.state.name == "PRUNED" for t in finished):
            return "tpe"
        spaces = {frozenset(t.distributions) for t in finished if t.state.name == "COMPLETE"}
        if len(spaces) > 1:  # conditional: trials asked for different parameters
            return "tpe"
        return "gp"

    def _for(self, trial: Any) -> optuna.samplers.BaseSampler:
        return self._chosen.get(trial.number, self._tpe)

    def before_trial(self, study: optuna.Study, trial: Any) -> None:
        name = self.choose(study)
        self._chosen[trial.number] = self._gp if name == "gp" else self._tpe
        study._storage.set_trial_system_attr(trial._trial_id, "hyperbrace.sampler", name)
        self._chosen[trial.number].before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: Any) -> dict[str, Any]:
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: Any, param_name: str, param_distribution: Any) -> Any:
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: Any, state: Any, values: Any) -> None:
        self._chosen.pop(trial.number, self._tpe).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._tpe.reseed_rng()
        self._gp.reseed_rng()


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
        if name == "auto":
            return AutoSampler(seed=seed, sites=sites, parallel=parallel)
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
      trials have finished and from its second epoch on. Optuna's median pruner compares with *completed* trials
      only, which are the survivors: once it prunes, the bar rises with every completed trial and it ends up
      pruning almost every new trial (docs/search.md);
    * ``"asha"`` (the default): asynchronous successive halving with its first rung at a ninth of a full
      trial's epochs (:class:`EpochScaledASHA`): at epochs r, 3r, 9r only the best third of the trials that
      reached that epoch go on. It waits for one trial to finish, to learn how long a full trial is;
    * ``"hyperband"``: several successive-halving brackets of different aggressiveness. Each bracket's trials are
      sampled from that bracket's own history, so a model-based ``algo`` (TPE) learns from fewer trials;
    * ``None``: never prune.

    >>> make_pruner("asha").__class__.__name__
    'EpochScaledASHA'
    """
    if isinstance(prune, optuna.pruners.BasePruner):
        return prune
    if prune is None or prune is False:
        return optuna.pruners.NopPruner()
    if prune == "asha":
        return EpochScaledASHA(reduction_factor=3)
    if prune == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource="auto", reduction_factor=3)
    if prune == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    raise ValueError(f"prune={prune!r} is not a known pruner; use one of {PRUNERS} or an Optuna pruner")
