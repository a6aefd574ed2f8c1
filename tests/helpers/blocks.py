"""Helpers with templates in another module of the user's project (imported under an alias by the tests)."""

from __future__ import annotations

from hyperbrace import choice, uniform  # noqa: F401  (what the templates name, as users import them)


def build_block(x, i):
    """One block; its width is a parameter per block, named by the caller's index."""
    return x + {{choice([10, 20], name=f"units_{i}")}}


def dropout_rate():
    return {{uniform(0, 0.5)}}


class BlockBuilder:
    def __init__(self):
        self.__scale = 3  # a private attribute: name mangling must keep working

    def build(self, x):
        return self._double(x) * self.__scale

    def _double(self, x):
        return x * {{choice([1, 2], name="factor")}}
