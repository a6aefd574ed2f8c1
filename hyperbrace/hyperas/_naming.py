"""Hyperas' naming rule: the parameter names (``best_run``'s keys) that Hyperas gives a model's templates.

Hyperas named each template with a regular expression over the model function's text. hyperbrace finds the
templates with :mod:`ast` (so braces in comments and strings are not templates) and then applies the same
*textual* rule to the source in front of each template:

1. The name is the identifier right before ``=`` or ``(`` in front of the template, spaces and line breaks
   allowed around the ``=`` / ``(``: ``Dropout({{...}})`` -> ``Dropout``, ``Dense(units={{...}})`` -> ``units``,
   ``model.add({{...}})`` -> ``add``, ``lr = {{...}}`` -> ``lr``. ``==``, ``+=``, ``:=``, ``,`` and ``[`` do not count.
2. Templates with the same text share the word of the first of them that has one. (Hyperas searched the whole
   function for "word, ``=`` or ``(``, this exact template text" and took the first hit.) So in
   ``a={{choice([1, 2])}}`` then ``b={{choice([1, 2])}}`` both are based on ``a``.
3. A template with no such word takes the previous template's name: ``Dropout({{uniform(0, 1)}})`` then
   ``if {{choice(['three', 'four'])}} == 'four':`` -> ``Dropout``, ``Dropout_1``; in ``f({{x}}, {{y}})`` the second
   is ``f_1``. Hyperas crashed when the very first template had no word; hyperbrace uses the distribution's name
   there (``choice``, ``uniform``...).
4. Repeated names get ``_1``, ``_2``, ... in source order; the first stays bare. Where such a name is already taken
   (a template literally named ``a_1`` besides two ``a``), the next free suffix is used, since Hyperas would have
   silently given two templates one name.

A template with an explicit ``name="..."`` (a hyperbrace extension) keeps that name.
"""

from __future__ import annotations

from collections.abc import Sequence

from hyperbrace.template import TemplateSite, with_repeat_suffixes

__all__ = ["hyperas_names", "word_before"]


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def word_before(source: str, offset: int) -> str | None:
    """The identifier right before ``=`` or ``(`` in front of position ``offset`` of ``source``, if any.

    >>> word_before("model.add(Dropout( {{uniform(0, 1)}}", 19)
    'Dropout'
    >>> word_before("if {{choice([1, 2])}}", 3) is None
    True
    >>> word_before("x == {{uniform(0, 1)}}", 5) is None
    True
    """
    position = offset
    while position > 0 and source[position - 1].isspace():
        position -= 1
    if position == 0 or source[position - 1] not in "=(":
        return None
    position -= 1
    while position > 0 and source[position - 1].isspace():
        position -= 1
    end = position
    while position > 0 and _is_word_char(source[position - 1]):
        position -= 1
    return source[position:end] or None


def _template_offset(site: TemplateSite, source: str) -> int | None:
    """Where ``site`` starts in ``source``; ``None`` if its position cannot be trusted (no text at the offset)."""
    if source.startswith(site.text, site.offset):
        return site.offset
    return None


def hyperas_names(sites: Sequence[TemplateSite], source: str) -> list[str]:
    """Name ``sites`` (in source order) by Hyperas' rule; the naming function the Hyperas layer compiles with.

    >>> from hyperbrace.template import TemplateSite
    >>> src = "a={{choice([1, 2])}}\\nb={{choice([1, 2])}}\\nif {{uniform(0, 1)}} > 0.5: pass"
    >>> def site(i, text): return TemplateSite(i, text, text[2:text.index("(")], "f.py", 1, 0, src.index(text), None)
    >>> hyperas_names([site(0, "{{choice([1, 2])}}"), site(1, "{{uniform(0, 1)}}")], src)
    ['a', 'a_1']
    """
    # Rule 2: a word for each template text, from the first of its occurrences that has one.
    word_for_text: dict[str, str] = {}
    for site in sites:
        if site.text in word_for_text:
            continue
        start = _template_offset(site, source)
        if start is None:  # the AST's position should always hold the text; if not, search for it
            start = source.find(site.text)
        while start != -1:
            word = word_before(source, start)
            if word is not None:
                word_for_text[site.text] = word
                break
            start = _next_template_occurrence(sites, site.text, start, source)

    bases: list[str] = []
    for site in sites:
        if site.explicit_name is not None:
            bases.append(site.explicit_name)
        elif site.text in word_for_text:
            bases.append(word_for_text[site.text])
        elif bases:
            bases.append(bases[-1])  # rule 3
        else:
            bases.append(site.distribution)  # rule 3, where Hyperas had no previous name and crashed

    # Rule 4: suffixes in source order; explicit names are never renamed.
    return with_repeat_suffixes(sites, bases)


def _next_template_occurrence(sites: Sequence[TemplateSite], text: str, after: int, source: str) -> int:
    """The offset of the next *template* (not a comment or string) with the same text after ``after``, or -1."""
    later = [
        offset
        for offset in (_template_offset(s, source) for s in sites if s.text == text)
        if offset is not None and offset > after
    ]
    return min(later, default=-1)
