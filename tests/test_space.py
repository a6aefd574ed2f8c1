"""Distributions: the range, rounding and shape of every prior, checked statistically with fixed seeds.

Values are drawn the way a search draws them: Optuna's RandomSampler samples the engine distribution that a
:class:`~hyperbrace.space.Distribution` declares, and ``to_value`` maps that raw value to the value the template
evaluates to. A seeded sampler makes every check here repeatable; the tolerances are several standard errors wide.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import optuna
import pytest
from scipy import stats

from hyperbrace import space
from hyperbrace.space import InvalidDistribution, LazyOption

N = 4000  # draws per distribution: standard errors of about 1.6% of the spread


@pytest.fixture(scope="module")
def trial():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    return study, study.ask()


def draw(trial, distribution: space.Distribution, n: int = N, seed: int = 0) -> list:
    """``n`` values of ``distribution`` as a search with a seeded RandomSampler would produce them."""
    study, frozen = trial
    sampler = optuna.samplers.RandomSampler(seed=seed)
    engine = distribution.engine_distribution()
    return [distribution.to_value(sampler.sample_independent(study, frozen, "x", engine)) for _ in range(n)]


def is_multiple(value: float, q: float) -> bool:
    return math.isclose(value / q, round(value / q), abs_tol=1e-9)


# -- continuous ----------------------------------------------------------------------------------------------------


def test_uniform_covers_its_range_evenly(trial):
    values = np.array(draw(trial, space.uniform(-2, 3)))
    assert values.min() >= -2 and values.max() <= 3
    assert values.min() < -1.9 and values.max() > 2.9
    assert stats.kstest(values, stats.uniform(loc=-2, scale=5).cdf).pvalue > 0.01


def test_quniform_gives_multiples_of_q_within_range(trial):
    values = draw(trial, space.quniform(0, 1, 0.25))
    assert all(is_multiple(v, 0.25) and 0 <= v <= 1 for v in values)
    counts = Counter(values)
    assert set(counts) == {0.0, 0.25, 0.5, 0.75, 1.0}  # both ends are reachable
    # Values carry no float noise (0.1 * 3 would be 0.30000000000000004).
    assert set(draw(trial, space.quniform(0, 1, 0.1), n=500)) <= {round(i * 0.1, 1) for i in range(11)}


def test_quniform_rounds_like_hyperopt_when_high_is_not_a_multiple():
    # round(x / q) * q for x in [0, 1] with q = 0.3 reaches 0, 0.3, 0.6 and 0.9 (1 / 0.3 = 3.33 rounds to 3).
    assert space.quniform(0, 1, 0.3).grid() == [0.0, 0.3, 0.6, 0.9]
    distribution = space.quniform(0, 1, 0.3)
    assert distribution.to_value(0.6000000000000001) == 0.6


def test_loguniform_is_uniform_in_log_space(trial):
    values = np.array(draw(trial, space.loguniform(1e-4, 1e-1)))
    assert values.min() >= 1e-4 and values.max() <= 1e-1
    logs = np.log(values)
    assert stats.kstest(logs, stats.uniform(loc=math.log(1e-4), scale=math.log(1e3)).cdf).pvalue > 0.01
    # Each decade holds about a third of the draws; a plain uniform would put 90% in the top decade.
    assert 0.28 < np.mean(values < 1e-3) < 0.39


def test_qloguniform_rounds_a_log_uniform_value(trial):
    values = np.array(draw(trial, space.qloguniform(16, 1024, 16)))
    assert all(is_multiple(v, 16) for v in values)
    assert values.min() >= 16 and values.max() <= 1024
    # The median of a log-uniform on [16, 1024] is sqrt(16 * 1024) = 128 (a uniform's would be 520).
    assert 100 <= np.median(values) <= 160


def test_normal_keeps_its_bell_shape(trial):
    values = np.array(draw(trial, space.normal(10, 2)))
    assert abs(values.mean() - 10) < 0.15
    assert abs(values.std() - 2) < 0.15
    assert stats.kstest(values, stats.norm(loc=10, scale=2).cdf).pvalue > 0.01
    # Not a clipped uniform: tails beyond 2 sigma hold about 4.6% of the mass, and 3-sigma values occur.
    tails = np.mean(np.abs(values - 10) > 4)
    assert 0.03 < tails < 0.065
    assert np.abs(values - 10).max() > 6


def test_normal_median_and_extreme_quantiles_are_finite():
    distribution = space.normal(0, 1)
    assert distribution.to_value(0.5) == 0.0
    assert math.isfinite(distribution.to_value(0.0)) and math.isfinite(distribution.to_value(1.0))
    assert distribution.to_value(0.0) < -6 and distribution.to_value(1.0) > 6


def test_qnormal_gives_multiples_of_q_around_mu(trial):
    values = np.array(draw(trial, space.qnormal(100, 10, 5)))
    assert all(is_multiple(v, 5) for v in values)
    assert abs(values.mean() - 100) < 1.0
    assert abs(values.std() - 10) < 1.0  # rounding to 5 adds a variance of only 25 / 12


def test_lognormal_is_normal_in_log_space(trial):
    values = np.array(draw(trial, space.lognormal(0, 0.5)))
    assert values.min() > 0
    assert stats.kstest(np.log(values), stats.norm(loc=0, scale=0.5).cdf).pvalue > 0.01
    assert abs(np.median(values) - 1.0) < 0.05


def test_qlognormal_gives_non_negative_multiples_of_q(trial):
    values = np.array(draw(trial, space.qlognormal(3, 1, 2)))
    assert all(is_multiple(v, 2) and v >= 0 for v in values)
    assert abs(np.median(values) - math.exp(3)) < 2.5  # the median of exp(normal(3, 1)) is e^3 ~ 20.1


# -- integers and choices ------------------------------------------------------------------------------------------


def test_randint_excludes_high(trial):
    assert Counter(draw(trial, space.randint(5), n=1000)).keys() == {0, 1, 2, 3, 4}
    values = draw(trial, space.randint(2, 5), n=1000)
    assert set(values) == {2, 3, 4}
    assert all(isinstance(v, int) for v in values)
    assert stats.chisquare(list(Counter(values).values())).pvalue > 0.01
    assert space.randint(3).grid() == [0, 1, 2]
    assert space.randint(-2, 1).grid() == [-2, -1, 0]


def test_uniformint_includes_both_ends(trial):
    values = draw(trial, space.uniformint(1, 3), n=1000)
    assert set(values) == {1, 2, 3}
    assert stats.chisquare(list(Counter(values).values())).pvalue > 0.01
    assert space.uniformint(1, 3).grid() == [1, 2, 3]
    assert space.uniformint(4, 4).grid() == [4]


def test_choice_is_uniform_over_its_options(trial):
    values = draw(trial, space.choice(["rmsprop", "adam", "sgd"]), n=3000)
    counts = Counter(values)
    assert set(counts) == {"rmsprop", "adam", "sgd"}
    assert stats.chisquare([counts[o] for o in ("rmsprop", "adam", "sgd")]).pvalue > 0.01


def test_pchoice_follows_the_given_probabilities(trial):
    distribution = space.pchoice([(0.7, "relu"), (0.2, "tanh"), (0.1, "sigmoid"), (0.0, "never")])
    counts = Counter(draw(trial, distribution))
    assert "never" not in counts
    expected = [0.7 * N, 0.2 * N, 0.1 * N]
    assert stats.chisquare([counts["relu"], counts["tanh"], counts["sigmoid"]], expected).pvalue > 0.01
    # The quantile at each edge picks the next option; 1.0 picks the last option with a chance.
    assert [distribution.to_value(u) for u in (0.0, 0.6999, 0.7, 0.9, 1.0)] == ["relu", "relu", "tanh", "sigmoid", "sigmoid"]


def test_same_seed_gives_the_same_draws(trial):
    for distribution in (space.uniform(0, 1), space.normal(0, 1), space.choice([1, 2, 3]), space.randint(10)):
        assert draw(trial, distribution, n=50, seed=7) == draw(trial, distribution, n=50, seed=7)
        assert draw(trial, distribution, n=50, seed=7) != draw(trial, distribution, n=50, seed=8)


# -- how values are stored -----------------------------------------------------------------------------------------


def test_primitive_options_are_stored_as_themselves():
    distribution = space.choice([256, 512, 1024])
    assert distribution.engine_distribution().choices == (256, 512, 1024)
    assert distribution.to_value(512) == 512 and distribution.record(512) == 512


def test_object_options_are_stored_by_index_with_their_repr_kept():
    options = [(3, 3), {"units": 8}, None]
    distribution = space.choice(options)
    assert distribution.engine_distribution().choices == (0, 1, 2)
    assert distribution.to_value(1) == {"units": 8}
    assert distribution.record(0) == "(3, 3)"
    assert distribution.record(2) is None  # a primitive keeps its value even among objects


def test_duplicate_options_are_told_apart_by_index():
    distribution = space.choice([1, 1.0, 2])  # 1 == 1.0, but they are different options
    assert distribution.engine_distribution().choices == (0, 1, 2)
    assert [distribution.to_value(i) for i in range(3)] == [1, 1.0, 2]


def test_lazy_options_are_built_afresh_each_time():
    built = []
    distribution = space.choice([LazyOption(lambda: built.append(1) or object(), "object()"), LazyOption(lambda: 5, "5", 5)])
    assert distribution.engine_distribution().choices == (0, 1)
    first, second = distribution.to_value(0), distribution.to_value(0)
    assert first is not second and len(built) == 2
    assert distribution.record(0) == "object()" and distribution.record(1) == 5


def test_engine_distributions_are_optunas_own():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    assert space.uniform(0, 1).engine_distribution() == FloatDistribution(0, 1)
    assert space.loguniform(1e-4, 1).engine_distribution() == FloatDistribution(1e-4, 1, log=True)
    assert space.quniform(0, 10, 2).engine_distribution() == FloatDistribution(0, 10, step=2)
    assert space.randint(5).engine_distribution() == IntDistribution(0, 4)
    assert space.uniformint(1, 5).engine_distribution() == IntDistribution(1, 5)
    assert isinstance(space.choice(["a"]).engine_distribution(), CategoricalDistribution)
    # Normal-type priors are stored as a quantile in [0, 1], mapped through the inverse CDF.
    assert space.normal(5, 1).engine_distribution() == FloatDistribution(0, 1)


def test_reprs_read_like_the_template():
    assert repr(space.uniform(0, 1)) == "uniform(0, 1)"
    assert repr(space.choice([256, "a"])) == "choice([256, 'a'])"
    assert repr(space.randint(3)) == "randint(3)"
    assert repr(space.pchoice([(0.5, "a"), (0.5, "b")])) == "pchoice([(0.5, 'a'), (0.5, 'b')])"


def test_only_finite_spaces_have_a_grid():
    assert space.choice(["a", "b"]).grid() == ["a", "b"]
    assert space.uniform(0, 1).grid() is None
    assert space.normal(0, 1).grid() is None
    assert space.pchoice([(1.0, "a")]).grid() is None


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: space.uniform(1, 0), "low (1) is greater than high (0)"),
        (lambda: space.uniform(0, math.inf), "must be finite"),
        (lambda: space.uniform("0", 1), "low must be a number"),
        (lambda: space.quniform(0, 1, 0), "q must be > 0"),
        (lambda: space.qnormal(0, 1, -1), "q must be > 0"),
        (lambda: space.loguniform(0, 1), "both > 0"),
        (lambda: space.normal(0, 0), "sigma must be > 0"),
        (lambda: space.randint(0), "high must be greater than low"),
        (lambda: space.randint(1.5), "must be an integer"),
        (lambda: space.uniformint(3, 1), "greater than high"),
        (lambda: space.choice([]), "empty"),
        (lambda: space.choice("abc"), "must be a list or tuple"),
        (lambda: space.pchoice([(0.5, "a"), (0.6, "b")]), "add up to 1"),
        (lambda: space.pchoice([(-0.5, "a"), (1.5, "b")]), ">= 0"),
        (lambda: space.pchoice(["a", "b"]), "(probability, option) pairs"),
    ],
)
def test_impossible_arguments_are_refused_at_once(make, message):
    with pytest.raises(InvalidDistribution) as info:
        make()
    assert message in str(info.value)


def test_loguniform_with_exponent_bounds_hints_at_hyperopts_meaning():
    with pytest.raises(InvalidDistribution) as info:
        space.loguniform(-10, 0)
    message = str(info.value)
    assert "hyperopt" in message and "loguniform(4.54e-05, 1)" in message
    assert "hyperbrace.hyperas.distributions" in message
