"""Hyperas' naming rule, as a table: model source -> the parameter names Hyperas gives (``best_run``'s keys).

Each expected list is derived by hand from the rule (docs/hyperas.md, "Parameter names"): the identifier right
before ``=`` or ``(`` in front of the template; templates with the same text share the word of the first of them
that has one; no word -> the previous template's name; repeats get ``_1``, ``_2``... The rows marked "hyperbrace"
are where Hyperas failed (a template in a comment became a parameter; a first template without a word crashed).
"""

from __future__ import annotations

import itertools
import linecache
import textwrap

import pytest

from hyperbrace.hyperas._naming import hyperas_names
from hyperbrace.hyperas.distributions import DISTRIBUTIONS
from hyperbrace.template import compile_model

_counter = itertools.count()


def define(body: str):
    """``def model():`` with ``body``, defined from source the way IPython does (a registered linecache entry)."""
    source = "def model():\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n"
    filename = f"<hyperas-naming-{next(_counter)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace: dict = {}
    exec(compile(source, filename, "exec"), namespace)
    return namespace["model"]


def names(body: str) -> list[str]:
    compiled = compile_model(define(body), naming=hyperas_names, distributions=DISTRIBUTIONS)
    return [site.name for site in compiled.sites]


TABLE = [
    ("called name", "model.add(Dropout({{uniform(0, 1)}}))", ["Dropout"]),
    ("keyword", "Dense(units={{choice([32, 64])}})", ["units"]),
    ("keyword with spaces", "Dense(64, activation = {{choice(['relu', 'tanh'])}})", ["activation"]),
    ("assignment", "lr = {{loguniform(-5, 0)}}", ["lr"]),
    ("method called", "model.add({{choice([Dropout(0.5), Activation('linear')])}})", ["add"]),
    ("attribute chain", "keras.layers.Dropout({{uniform(0, 0.5)}})", ["Dropout"]),
    (
        "the same called name twice",
        """
        model.add(Dense({{choice([64, 128])}}))
        model.add(Dense({{choice([256, 512])}}))
        """,
        ["Dense", "Dense_1"],
    ),
    (
        "three times, source order",
        """
        Dense({{choice([1, 2])}})
        Dense({{choice([3, 4])}})
        Dense({{choice([5, 6])}})
        """,
        ["Dense", "Dense_1", "Dense_2"],
    ),
    (
        "same text: the earlier template's word",
        """
        a = {{choice([1, 2])}}
        b = {{choice([1, 2])}}
        """,
        ["a", "a_1"],
    ),
    (
        "same text: the first occurrence that has a word",
        """
        if {{choice([1, 2])}} == 1:
            pass
        k = {{choice([1, 2])}}
        """,
        ["k", "k_1"],
    ),
    (
        "if condition: the previous template's name",
        """
        model.add(Dropout({{uniform(0, 1)}}))
        if {{choice(['three', 'four'])}} == 'four':
            pass
        """,
        ["Dropout", "Dropout_1"],
    ),
    ("second positional argument", "f({{uniform(0, 1)}}, {{uniform(1, 2)}})", ["f", "f_1"]),
    (
        "== is not =",
        """
        a = {{uniform(0, 1)}}
        if a == {{uniform(0, 2)}}:
            pass
        """,
        ["a", "a_1"],
    ),
    (
        "+= is not =",
        """
        total = {{uniform(0, 5)}}
        total += {{uniform(0, 1)}}
        """,
        ["total", "total_1"],
    ),
    ("line break after the parenthesis", "Dense(\n    {{choice([8, 16])}},\n    activation='relu')", ["Dense"]),
    ("tabs", "x\t=\t{{uniform(0, 1)}}", ["x"]),
    ("Hyperas' conditional()", "if conditional({{choice(['a', 'b'])}}) == 'a':\n    pass", ["conditional"]),
    (
        "a dict value has no word (native naming would say 'lr')",
        """
        d = {'lr': {{uniform(0, 1)}}}
        """,
        ["uniform"],
    ),
    (
        "subscript assignment has no word",
        """
        rate = {{uniform(0, 1)}}
        params['x'] = {{uniform(0, 2)}}
        """,
        ["rate", "rate_1"],
    ),
    (
        "inner function",
        """
        def layer():
            return Dense({{choice([4, 8])}})
        units = {{choice([1, 2])}}
        """,
        ["Dense", "units"],
    ),
    (
        "a suffixed name already taken: the next free suffix",
        """
        a = {{uniform(0, 1)}}
        a = {{uniform(0, 2)}}
        a_1 = {{uniform(0, 3)}}
        """,
        ["a", "a_1", "a_1_1"],
    ),
    ("non-ASCII text before the template on its line", "s = 'é'; x = {{uniform(0, 1)}}", ["x"]),
    # Where Hyperas failed and hyperbrace decides:
    (
        "hyperbrace: a template in a comment is not a parameter, nor a word source",
        """
        # Dropout({{uniform(0, 1)}}) was tried
        rate = {{uniform(0, 1)}}
        """,
        ["rate"],
    ),
    (
        "hyperbrace: braces in a docstring are text",
        '''
        """Dense({{choice([1, 2])}})"""
        units = {{choice([1, 2])}}
        ''',
        ["units"],
    ),
    (
        "hyperbrace: a first template without a word is named after its distribution",
        """
        if {{choice([1, 2])}} == 1:
            pass
        Dropout({{uniform(0, 1)}})
        """,
        ["choice", "Dropout"],
    ),
    ("hyperbrace: an explicit name= wins", "Dense({{choice([1, 2], name='width')}})", ["width"]),
]


@pytest.mark.parametrize("body, expected", [(body, expected) for _, body, expected in TABLE],
                         ids=[case for case, _, _ in TABLE])
def test_hyperas_naming_rule(body: str, expected: list[str]) -> None:
    assert names(body) == expected


def test_the_table_is_at_least_fifteen_snippets() -> None:
    assert len(TABLE) >= 15
