"""Hyperas' distributions, with hyperopt's meanings: what ``{{...}}`` means in a script written for Hyperas.

Change ``from hyperas.distributions import ...`` to ``from hyperbrace.hyperas.distributions import ...`` and every
template keeps the meaning it had under Hyperas (which passed it to hyperopt's ``hp.*``):

===========================  =======================================================================
``choice(options)``          one of the options; ``best_run`` holds its *index* (``eval_space=True``: the value)
``pchoice([(p, option)])``   one option, drawn with the given probabilities; ``best_run`` holds its index
``uniform(low, high)``       a float in ``[low, high]``
``quniform(low, high, q)``   ``round(uniform(low, high) / q) * q``, a float
``loguniform(low, high)``    ``exp(uniform(low, high))``: the bounds are *exponents* (``loguniform(-10, 0)`` is in
                             ``[e**-10, 1]``)
``qloguniform(low, high, q)`` ``round(exp(uniform(low, high)) / q) * q``
``normal(mu, sigma)``        a float from the normal distribution
``qnormal(mu, sigma, q)``    ``round(normal(mu, sigma) / q) * q``
``lognormal(mu, sigma)``     ``exp(normal(mu, sigma))``
``qlognormal(mu, sigma, q)`` ``round(exp(normal(mu, sigma)) / q) * q``
``randint(upper)``           an integer in ``0 .. upper - 1`` (``randint(low, high)``: ``low .. high - 1``)
``uniformint(low, high)``    an integer in ``low .. high``, both included
===========================  =======================================================================

Only ``loguniform`` and ``qloguniform`` differ from hyperbrace's native distributions (which take the real
bounds); the others are the native ones, re-exported. ``conditional`` is Hyperas' identity helper, kept so old
imports work.

Outside a template each function is an ordinary call that checks its arguments and returns the distribution:

>>> from hyperbrace.hyperas.distributions import loguniform, randint
>>> loguniform(-10, 0)
loguniform(-10, 0)
>>> lr = loguniform(-10, 0)
>>> round(lr.low, 6), lr.high  # the real bounds: e**-10 and e**0
(4.5e-05, 1.0)
>>> randint(5).grid()
[0, 1, 2, 3, 4]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

from hyperbrace import space
from hyperbrace.space import (
    Distribution,
    InvalidDistribution,
    choice,
    lognormal,
    normal,
    pchoice,
    qlognormal,
    qnormal,
    quniform,
    randint,
    uniform,
    uniformint,
)

__all__ = [
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
    "conditional",
    "DISTRIBUTIONS",
]

_T = TypeVar("_T")


def _real_bound(exponent: Any, what: str, name: str) -> float:
    """``exp(exponent)``, checked: hyperopt's log distributions take the logarithm of each bound."""
    if isinstance(exponent, bool) or not isinstance(exponent, (int, float)) or not math.isfinite(exponent):
        raise InvalidDistribution(f"{name}: {what} must be a finite number (an exponent), got {exponent!r}")
    try:
        bound = math.exp(exponent)
    except OverflowError:
        raise InvalidDistribution(
            f"{name}: {what}={exponent!r} is an exponent, and e**{exponent!r} is too large for a float; "
            f"hyperopt's {name} takes log(bound), e.g. {name}(-10, 0) for [e**-10, 1]"
        ) from None
    if bound == 0.0:
        raise InvalidDistribution(
            f"{name}: {what}={exponent!r} is an exponent, and e**{exponent!r} is 0 as a float; "
            f"hyperopt's {name} takes log(bound), e.g. {name}(-10, 0) for [e**-10, 1]"
        )
    return bound


class HyperoptLogUniform(space.LogUniform):
    """hyperopt's ``loguniform(low, high)``: ``exp(uniform(low, high))``, i.e. the native log-uniform distribution
    between ``e**low`` and ``e**high``. Shown (and compared) with the exponents the template was written with."""

    def __init__(self, low: float, high: float) -> None:
        if isinstance(low, (int, float)) and isinstance(high, (int, float)) and low > high:
            raise InvalidDistribution(f"loguniform: low ({low!r}) is greater than high ({high!r}); swap them")
        super().__init__(_real_bound(low, "low", self.name), _real_bound(high, "high", self.name))
        self._args = (low, high)


class HyperoptQLogUniform(space.QLogUniform):
    """hyperopt's ``qloguniform(low, high, q)``: ``round(exp(uniform(low, high)) / q) * q``."""

    def __init__(self, low: float, high: float, q: float) -> None:
        if isinstance(low, (int, float)) and isinstance(high, (int, float)) and low > high:
            raise InvalidDistribution(f"qloguniform: low ({low!r}) is greater than high ({high!r}); swap them")
        super().__init__(_real_bound(low, "low", self.name), _real_bound(high, "high", self.name), q)
        self._args = (low, high, q)


def loguniform(low: float, high: float) -> Distribution:
    """``exp(uniform(low, high))``: a positive float whose logarithm is uniform in ``[low, high]`` (hyperopt).

    >>> lr = loguniform(-10, 0)
    >>> lr.to_value(0.5)
    0.5
    """
    return HyperoptLogUniform(low, high)


def qloguniform(low: float, high: float, q: float) -> Distribution:
    """``round(exp(uniform(low, high)) / q) * q`` (hyperopt), e.g. ``qloguniform(log(16), log(1024), 16)``.

    >>> qloguniform(math.log(16), math.log(1024), 16).to_value(41.0)
    48.0
    """
    return HyperoptQLogUniform(low, high, q)


def conditional(value: _T) -> _T:
    """Hyperas' ``conditional``: returns ``value`` unchanged (scripts wrap a template in it, e.g.
    ``if conditional({{choice(['three', 'four'])}}) == 'four':``). Kept so that old imports keep working.

    >>> conditional("four")
    'four'
    """
    return value


#: The table a Hyperas model's templates are compiled with: name -> constructor, with hyperopt's meanings.
DISTRIBUTIONS: dict[str, Callable[..., Distribution]] = {
    f.__name__: f
    for f in (
        choice, pchoice, uniform, quniform, loguniform, qloguniform,
        normal, qnormal, lognormal, qlognormal, randint, uniformint,
    )
}
