"""Distributions: what a ``{{...}}`` template may ask for, and how each maps onto Optuna.

Every public constructor here (``choice``, ``uniform``, ...) checks its arguments at once and returns a
:class:`Distribution`. Inside a template it describes a hyperparameter; outside one it is an ordinary
object that you can inspect::

    >>> from hyperbrace import uniform, choice
    >>> uniform(0, 1)
    uniform(0, 1)
    >>> choice([256, 512, 1024]).options
    (256, 512, 1024)

Meanings are the modern ones: ``loguniform(low, high)`` takes the real bounds (both > 0). The hyperopt meanings
(``loguniform(-10, 0)`` as exponents) live in :mod:`hyperbrace.hyperas.distributions`.

How each maps onto the engine (Optuna), and why:

* ``choice``/``uniform``/``loguniform``/``randint``/``uniformint``/``quniform`` map onto Optuna's own
  categorical, float (log or stepped) and int distributions, so optuna-dashboard shows the real values and every
  sampler (grid included, where the space is finite) understands them.
* ``normal``-type priors have no bounds, and a clipped uniform would lose their shape. They are sampled as a
  uniform *quantile* ``u`` in (0, 1) that is mapped through the normal inverse CDF: a random sampler then draws an
  exactly normal value, and TPE models the quantile. The engine stores ``u``; hyperbrace records the real value
  next to it (trial attribute ``hb.values``).
* ``qloguniform`` samples the log-uniform value and rounds it, since Optuna has no stepped log distribution.
* ``pchoice`` samples a uniform quantile that picks an option by its cumulative probability, so the prior is
  exactly the given probabilities.
"""

from __future__ import annotations

import math
import numbers
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

__all__ = [
    "Distribution",
    "choice",
    "pchoice",
    "uniform",
    "quniform",
    "loguniform",
    "qloguniform",
    "normal",
    "qnormal",
    "lognormal",
    "qlognormal",
    "randint",
    "uniformint",
    "DISTRIBUTIONS",
]

# The quantile of a normal prior is kept this far from 0 and 1, where the inverse CDF is infinite.
_QUANTILE_EPS = 1e-12
_PRIMITIVE_TYPES = (bool, int, float, str, type(None))


class InvalidDistribution(ValueError):
    """A distribution was given arguments it cannot sample from (low > high, q <= 0, empty choice...)."""


def _is_primitive(value: Any) -> bool:
    return isinstance(value, _PRIMITIVE_TYPES)


def _real(value: Any, what: str, dist: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidDistribution(f"{dist}: {what} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise InvalidDistribution(f"{dist}: {what} must be finite, got {value!r}")
    return value


def _integer(value: Any, what: str, dist: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise InvalidDistribution(f"{dist}: {what} must be an integer, got {value!r}")
    return int(value)


def _check_order(low: float, high: float, dist: str) -> None:
    if low > high:
        raise InvalidDistribution(f"{dist}: low ({low!r}) is greater than high ({high!r}); swap them")


def _check_q(q: Any, dist: str) -> float:
    q = _real(q, "q", dist)
    if q <= 0:
        raise InvalidDistribution(f"{dist}: q must be > 0 (the rounding step), got {q!r}")
    return q


def _round_to(value: float, q: float) -> float:
    # round(x / q) * q leaves float noise (0.1 * 3 = 0.30000000000000004); 12 digits removes it.
    return float(round(round(value / q) * q, 12))


def _fmt(*args: Any) -> str:
    return ", ".join(repr(a) for a in args)


class Distribution:
    """A hyperparameter's prior: the engine distribution that stores it, and the map to the value you get.

    ``engine_distribution()`` is what Optuna samples and stores; ``to_value(raw)`` turns that stored value into
    the value the template evaluates to. Subclasses are created by the public constructors only.
    """

    name: str = "distribution"

    def __init__(self, *args: Any) -> None:
        self._args = args

    def engine_distribution(self) -> BaseDistribution:
        raise NotImplementedError

    def to_value(self, raw: Any) -> Any:
        return raw

    def record(self, raw: Any) -> Any:
        """The JSON-friendly form of the value for ``raw``, kept in reports and ``best_run``."""
        return self.to_value(raw)

    def grid(self) -> list[Any] | None:
        """Every engine value, where the space is finite (for ``algo="grid"``); otherwise ``None``."""
        return None

    def same_as(self, other: Distribution) -> bool:
        return type(self) is type(other) and self.engine_distribution() == other.engine_distribution()

    def __repr__(self) -> str:
        return f"{self.name}({_fmt(*self._args)})"


class LazyOption:
    """One option of a ``choice`` written in a template: built only when chosen, afresh in every trial.

    The template compiler wraps each literal option (``choice([Dropout(0.5), Activation('linear')])``) in one of
    these so that layer objects are never shared between trials, and templates inside an unchosen option are
    never sampled.
    """

    __slots__ = ("build", "text", "literal")
    _NOT_LITERAL = object()

    def __init__(self, build: Callable[[], Any], text: str, literal: Any = _NOT_LITERAL) -> None:
        self.build = build
        self.text = text
        self.literal = literal

    @property
    def is_primitive(self) -> bool:
        return self.literal is not LazyOption._NOT_LITERAL and _is_primitive(self.literal)

    def __repr__(self) -> str:
        return self.text


class Choice(Distribution):
    name = "choice"

    def __init__(self, options: Sequence[Any]) -> None:
        if isinstance(options, (str, bytes)) or not hasattr(options, "__len__"):
            raise InvalidDistribution(f"choice: options must be a list or tuple, got {options!r}")
        options = tuple(options)
        if not options:
            raise InvalidDistribution("choice: the list of options is empty; give at least one option")
        super().__init__(list(options))
        self.options = options
        # Primitive options are stored as themselves; anything else (a layer, a tuple, a dict) by its index.
        self._values = [o.literal if isinstance(o, LazyOption) and o.is_primitive else o for o in options]
        self.by_index = not all(_is_primitive(v) and not isinstance(v, LazyOption) for v in self._values)
        # Options that compare equal (a repeated option, or 1, 1.0 and True, which Optuna's list.index() cannot
        # tell apart) are stored by index too: only the index says which one was drawn.
        if not self.by_index and len(set(self._values)) != len(self._values):
            self.by_index = True

    def engine_distribution(self) -> BaseDistribution:
        if self.by_index:
            return CategoricalDistribution(list(range(len(self.options))))
        return CategoricalDistribution(list(self._values))

    def index_of(self, raw: Any) -> int:
        return raw if self.by_index else self._values.index(raw)

    def to_value(self, raw: Any) -> Any:
        option = self.options[self.index_of(raw)]
        return option.build() if isinstance(option, LazyOption) else option

    def record(self, raw: Any) -> Any:
        option = self._values[self.index_of(raw)]
        return option if _is_primitive(option) else repr(option)

    def grid(self) -> list[Any]:
        return list(self.engine_distribution().choices)

    def __repr__(self) -> str:
        return f"choice([{', '.join(repr(o) for o in self.options)}])"


class PChoice(Choice):
    name = "pchoice"

    def __init__(self, weighted: Sequence[tuple[float, Any]]) -> None:
        try:
            pairs = [(p, o) for p, o in weighted]
        except (TypeError, ValueError):
            raise InvalidDistribution(
                f"pchoice: give a list of (probability, option) pairs, got {weighted!r}"
            ) from None
        if not pairs:
            raise InvalidDistribution("pchoice: the list of (probability, option) pairs is empty")
        probs = [_real(p, "each probability", "pchoice") for p, _ in pairs]
        if any(p < 0 for p in probs):
            raise InvalidDistribution(f"pchoice: probabilities must be >= 0, got {probs}")
        if not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
            raise InvalidDistribution(f"pchoice: probabilities must add up to 1, they add up to {sum(probs)!r}")
        super().__init__([o for _, o in pairs])
        self._args = (pairs,)
        self.probabilities = tuple(probs)
        self._cumulative = [sum(probs[: i + 1]) for i in range(len(probs))]

    def engine_distribution(self) -> BaseDistribution:
        return FloatDistribution(0.0, 1.0)

    def index_of(self, raw: Any) -> int:
        for index, edge in enumerate(self._cumulative):
            if raw < edge and self.probabilities[index] > 0:
                return index
        return max(i for i, p in enumerate(self.probabilities) if p > 0)

    def grid(self) -> None:
        return None

    def __repr__(self) -> str:
        pairs = ", ".join(f"({p!r}, {o!r})" for p, o in zip(self.probabilities, self.options))
        return f"pchoice([{pairs}])"


class Uniform(Distribution):
    name = "uniform"

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = _real(low, "low", self.name), _real(high, "high", self.name)
        _check_order(self.low, self.high, self.name)
        super().__init__(low, high)

    def engine_distribution(self) -> BaseDistribution:
        return FloatDistribution(float(self.low), float(self.high))


class QUniform(Distribution):
    name = "quniform"

    def __init__(self, low: float, high: float, q: float) -> None:
        self.low, self.high = _real(low, "low", self.name), _real(high, "high", self.name)
        self.q = _check_q(q, self.name)
        _check_order(self.low, self.high, self.name)
        super().__init__(low, high, q)
        # The values are the multiples of q that round(x / q) * q reaches for x in [low, high].
        self._first, self._last = round(self.low / self.q), round(self.high / self.q)

    def engine_distribution(self) -> BaseDistribution:
        low, high = _round_to(self._first * self.q, self.q), _round_to(self._last * self.q, self.q)
        return FloatDistribution(low, high, step=self.q)

    def to_value(self, raw: Any) -> float:
        return _round_to(raw, self.q)

    def grid(self) -> list[float]:
        return [_round_to(i * self.q, self.q) for i in range(self._first, self._last + 1)]


class LogUniform(Distribution):
    name = "loguniform"

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = _real(low, "low", self.name), _real(high, "high", self.name)
        if self.low <= 0 or self.high <= 0:
            hint = ""
            if self.high <= 0 or self.low < 0:
                hint = (
                    f" {self.name}({_fmt(low, high)}) looks like hyperopt's exponent bounds: write "
                    f"{self.name}({math.exp(self.low):.3g}, {math.exp(self.high):.3g}) for the same range, or use "
                    "hyperbrace.hyperas.distributions, which keeps hyperopt's meaning"
                )
            raise InvalidDistribution(
                f"{self.name} takes the real bounds, both > 0 (e.g. {self.name}(1e-4, 1e-1)), got "
                f"low={low!r}, high={high!r}.{hint}"
            )
        _check_order(self.low, self.high, self.name)
        super().__init__(low, high)

    def engine_distribution(self) -> BaseDistribution:
        return FloatDistribution(float(self.low), float(self.high), log=True)


class QLogUniform(LogUniform):
    name = "qloguniform"

    def __init__(self, low: float, high: float, q: float) -> None:
        super().__init__(low, high)
        self.q = _check_q(q, self.name)
        self._args = (low, high, q)

    def to_value(self, raw: Any) -> float:
        return _round_to(raw, self.q)


class Normal(Distribution):
    name = "normal"

    def __init__(self, mu: float, sigma: float) -> None:
        self.mu, self.sigma = _real(mu, "mu", self.name), _real(sigma, "sigma", self.name)
        if self.sigma <= 0:
            raise InvalidDistribution(f"{self.name}: sigma must be > 0, got {sigma!r}")
        super().__init__(mu, sigma)
        self._normal = statistics.NormalDist(self.mu, self.sigma)

    def engine_distribution(self) -> BaseDistribution:
        return FloatDistribution(0.0, 1.0)

    def _draw(self, quantile: float) -> float:
        return self._normal.inv_cdf(min(max(quantile, _QUANTILE_EPS), 1 - _QUANTILE_EPS))

    def to_value(self, raw: Any) -> float:
        return self._draw(raw)


class QNormal(Normal):
    name = "qnormal"

    def __init__(self, mu: float, sigma: float, q: float) -> None:
        super().__init__(mu, sigma)
        self.q = _check_q(q, self.name)
        self._args = (mu, sigma, q)

    def to_value(self, raw: Any) -> float:
        return _round_to(self._draw(raw), self.q)


class LogNormal(Normal):
    name = "lognormal"

    def to_value(self, raw: Any) -> float:
        return math.exp(self._draw(raw))


class QLogNormal(Normal):
    name = "qlognormal"

    def __init__(self, mu: float, sigma: float, q: float) -> None:
        super().__init__(mu, sigma)
        self.q = _check_q(q, self.name)
        self._args = (mu, sigma, q)

    def to_value(self, raw: Any) -> float:
        return _round_to(math.exp(self._draw(raw)), self.q)


class RandInt(Distribution):
    name = "randint"

    def __init__(self, low: int, high: int | None = None) -> None:
        args = (low,) if high is None else (low, high)
        if high is None:
            low, high = 0, low
        self.low, self.high = _integer(low, "low", self.name), _integer(high, "high", self.name)
        if self.high <= self.low:
            raise InvalidDistribution(
                f"randint draws integers low <= x < high, so high must be greater than low; got "
                f"randint({_fmt(*args)})"
            )
        super().__init__(*args)

    def engine_distribution(self) -> BaseDistribution:
        return IntDistribution(self.low, self.high - 1)

    def grid(self) -> list[int]:
        return list(range(self.low, self.high))


class UniformInt(Distribution):
    name = "uniformint"

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = _integer(low, "low", self.name), _integer(high, "high", self.name)
        _check_order(self.low, self.high, self.name)
        super().__init__(low, high)

    def engine_distribution(self) -> BaseDistribution:
        return IntDistribution(self.low, self.high)

    def grid(self) -> list[int]:
        return list(range(self.low, self.high + 1))


def choice(options: Sequence[Any]) -> Distribution:
    """One of ``options``, each equally likely. Options may be any objects (layers, tuples, dicts).

    >>> choice(["rmsprop", "adam", "sgd"]).options
    ('rmsprop', 'adam', 'sgd')
    """
    return Choice(options)


def pchoice(weighted: Sequence[tuple[float, Any]]) -> Distribution:
    """One option, drawn with the given probabilities: ``pchoice([(0.8, "relu"), (0.2, "tanh")])``.

    >>> pchoice([(0.8, "relu"), (0.2, "tanh")]).probabilities
    (0.8, 0.2)
    """
    return PChoice(weighted)


def uniform(low: float, high: float) -> Distribution:
    """A float drawn uniformly from ``[low, high]``.

    >>> uniform(0, 1)
    uniform(0, 1)
    """
    return Uniform(low, high)


def quniform(low: float, high: float, q: float) -> Distribution:
    """``round(uniform(low, high) / q) * q``: a float on the grid of multiples of ``q``.

    >>> quniform(0, 1, 0.25).grid()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    return QUniform(low, high, q)


def loguniform(low: float, high: float) -> Distribution:
    """A float whose logarithm is uniform: between ``low`` and ``high``, both > 0 (learning rates).

    >>> loguniform(1e-4, 1e-1)
    loguniform(0.0001, 0.1)
    """
    return LogUniform(low, high)


def qloguniform(low: float, high: float, q: float) -> Distribution:
    """``round(loguniform(low, high) / q) * q``.

    >>> qloguniform(16, 1024, 16)
    qloguniform(16, 1024, 16)
    """
    return QLogUniform(low, high, q)


def normal(mu: float, sigma: float) -> Distribution:
    """A float from the normal distribution with mean ``mu`` and standard deviation ``sigma``.

    >>> normal(0, 1).to_value(0.5)  # the engine stores the quantile; 0.5 is the median
    0.0
    """
    return Normal(mu, sigma)


def qnormal(mu: float, sigma: float, q: float) -> Distribution:
    """``round(normal(mu, sigma) / q) * q``.

    >>> qnormal(10, 2, 1).to_value(0.5)
    10.0
    """
    return QNormal(mu, sigma, q)


def lognormal(mu: float, sigma: float) -> Distribution:
    """``exp(normal(mu, sigma))``: a positive float whose logarithm is normal.

    >>> lognormal(0, 1).to_value(0.5)
    1.0
    """
    return LogNormal(mu, sigma)


def qlognormal(mu: float, sigma: float, q: float) -> Distribution:
    """``round(exp(normal(mu, sigma)) / q) * q``.

    >>> qlognormal(0, 1, 1).to_value(0.5)
    1.0
    """
    return QLogNormal(mu, sigma, q)


def randint(low: int, high: int | None = None) -> Distribution:
    """An integer with ``low <= x < high``; ``randint(n)`` is ``0 <= x < n`` (as ``range`` and hyperopt).

    >>> randint(3).grid()
    [0, 1, 2]
    """
    return RandInt(low, high)


def uniformint(low: int, high: int) -> Distribution:
    """An integer with ``low <= x <= high``, both ends included.

    >>> uniformint(1, 3).grid()
    [1, 2, 3]
    """
    return UniformInt(low, high)


#: The distributions a template may name, by name.
DISTRIBUTIONS: dict[str, Callable[..., Distribution]] = {
    f.__name__: f
    for f in (
        choice, pchoice, uniform, quniform, loguniform, qloguniform,
        normal, qnormal, lognormal, qlognormal, randint, uniformint,
    )
}
