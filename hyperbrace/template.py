"""Templates: read a model function's ``{{...}}`` hyperparameters and rewrite them into trial suggestions.

``{{uniform(0, 1)}}`` is valid Python (a set inside a set), so the function's source is parsed with :mod:`ast`.
Each template becomes a call that asks the running trial for a value (define-by-run: a template in a branch that
does not run is never sampled), and the rewritten function is compiled against the original function's globals
and closure, so helpers, globals, imports and custom layers resolve exactly as in your code.

>>> from hyperbrace.template import compile_model
>>> def build(model):
...     lr = {{loguniform(1e-4, 1e-1)}}
...     model.add(Dense(units={{choice([32, 64])}}))
...     model.add(Dropout({{uniform(0, 0.5)}}))
...     model.add(Dropout({{uniform(0, 0.5)}}))
>>> [site.name for site in compile_model(build).sites]
['lr', 'units', 'Dropout', 'Dropout_1']

Naming, in order of precedence (see the README's table):

1. ``name="..."`` inside the template (an f-string is fine: ``{{choice([32, 64], name=f"units_{i}")}}``);
2. the keyword the template is passed to: ``Dense(units={{...}})`` -> ``units``;
3. the function it is passed to positionally: ``Dropout({{...}})`` -> ``Dropout``, ``model.add({{...}})`` -> ``add``;
4. the name it is assigned to (or the string key it is stored under): ``lr = {{...}}`` -> ``lr``;
5. otherwise the distribution's name: ``if {{choice([...])}} == "x":`` -> ``choice``.

Names that repeat get ``_1``, ``_2``... in source order. A name met twice in one trial (a template in a loop, or
an explicit name used twice) has one value.
"""

from __future__ import annotations

import __future__
import ast
import copy
import difflib
import functools
import inspect
import linecache
import re
import sys
import textwrap
import traceback
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hyperbrace import space
from hyperbrace._context import current_trial
from hyperbrace.space import Distribution, InvalidDistribution, LazyOption

__all__ = ["TemplateError", "TemplateSite", "CompiledModel", "compile_model", "space_entries", "uncompiled_template_error"]

_RUNTIME = "\x00hyperbrace-runtime\x00"
_FACTORY = "__hyperbrace_factory__"


class TemplateError(ValueError):
    """A ``{{...}}`` template that cannot work, with the file, line and template text it comes from."""

    def __init__(self, message: str, *, filename: str = "", lineno: int = 0, text: str = "", function: str = ""):
        self.message, self.filename, self.lineno, self.text, self.function = message, filename, lineno, text, function
        where = f'File "{filename}", line {lineno}' + (f", in {function}" if function else "")
        super().__init__(f"{where}\n    {text}\n{message}" if text else f"{where}\n{message}")


class TemplateSourceError(TemplateError):
    """The model function's source code cannot be read, so its templates cannot be found."""


@dataclass
class TemplateSite:
    """One ``{{...}}`` in the source: where it is, what it asks for, and the name its value is stored under."""

    index: int
    text: str  #: the template as written, braces included
    distribution: str  #: the distribution's name, e.g. ``"uniform"``
    filename: str
    lineno: int
    col: int
    offset: int  #: character offset of the template in ``source``
    context: str | None  #: the keyword / called name / assigned name in front of the template, if any
    explicit_name: str | None = None  #: the ``name=`` string, or the source of the expression that makes it
    dynamic_name: bool = False  #: whether ``name=`` is an expression evaluated in the trial (an f-string)
    name: str = ""  #: the parameter name (for ``name=`` templates: the source of the name expression)
    function: str = ""
    #: the distribution built from the template's literal arguments; ``None`` where they are known only in a trial
    static_distribution: Distribution | None = field(default=None, repr=False)

    def error(self, message: str) -> TemplateError:
        return TemplateError(
            message, filename=self.filename, lineno=self.lineno, text=self.text, function=self.function
        )


#: A naming rule: given the sites (in source order) and the function's source, the name of each site.
Naming = Callable[[Sequence[TemplateSite], str], list[str]]


def native_names(sites: Sequence[TemplateSite], source: str) -> list[str]:
    """hyperbrace's naming rule: context word, else the distribution's name; repeats get ``_1``, ``_2``..."""
    return with_repeat_suffixes(sites, [site.context or site.distribution for site in sites])


def with_repeat_suffixes(sites: Sequence[TemplateSite], bases: Sequence[str]) -> list[str]:
    """Each site's name: its explicit ``name=`` as given, else its base name, with ``_1``, ``_2``... in source order
    where the base is already taken (by an earlier site or by an explicit name)."""
    names: list[str] = []
    taken: set[str] = {s.explicit_name for s in sites if s.explicit_name is not None and not s.dynamic_name}
    counts: dict[str, int] = {}
    for site, base in zip(sites, bases):
        if site.explicit_name is not None:
            names.append(site.explicit_name)
            continue
        candidate = base
        while candidate in taken:
            counts[base] = counts.get(base, 0) + 1
            candidate = f"{base}_{counts[base]}"
        taken.add(candidate)
        names.append(candidate)
    return names


#: Context words that make weak names: a builtin the template is passed to (``range({{...}})``, ``int(...)``).
_WEAK_CONTEXTS = frozenset(dir(__import__("builtins")))


def space_entries(sites: Sequence[TemplateSite]) -> list[dict[str, Any]]:
    """The search space as plain rows (they are stored with the study): one per template, in source order.

    ``weak`` marks a name from the weakest fallback rules (the distribution's name, or a builtin such as
    ``range`` the template is passed to), which says little in ``best_run``: give such a template a ``name=``.

    >>> def model():
    ...     for _ in range({{choice([1, 2])}}):
    ...         lr = {{loguniform(1e-4, 1e-2)}}
    >>> [(e["name"], e["distribution"], e["weak"]) for e in space_entries(compile_model(model).sites)]
    [('range', 'choice([1, 2])', True), ('lr', 'loguniform(1e-4, 1e-2)', False)]
    """
    rows = []
    for site in sites:
        weak = site.explicit_name is None and (site.context is None or site.context in _WEAK_CONTEXTS)
        rows.append({
            "name": site.name, "distribution": _without_name(site.text[2:-2]), "file": site.filename,
            "line": site.lineno, "function": site.function, "weak": weak,
        })
    return rows


def _without_name(expression: str) -> str:
    """The distribution call as written, on one line and without its ``name=`` (shown in the name column)."""
    try:
        call = ast.parse(expression.strip(), mode="eval").body
    except SyntaxError:
        return " ".join(expression.split())
    if not isinstance(call, ast.Call) or not any(k.arg == "name" for k in call.keywords):
        return " ".join(expression.split()) if "#" not in expression else ast.unparse(call)
    call.keywords = [k for k in call.keywords if k.arg != "name"]
    return ast.unparse(call)


# -- reading the source ----------------------------------------------------------------------------------------


def _find_function(tree: ast.AST, name: str, firstlineno: int) -> ast.FunctionDef | None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            if firstlineno in (first, node.lineno):
                return node
    return None


@functools.lru_cache(maxsize=64)
def _parse(text: str, filename: str) -> ast.Module:
    """A file's syntax tree, parsed once per text (several functions of one file are compiled together)."""
    return ast.parse(text, filename=filename)


def _read_source(fn: types.FunctionType) -> tuple[str, ast.FunctionDef, str]:
    """The text the function's line numbers refer to, its parsed ``def``, and the file name."""
    code = fn.__code__
    filename = code.co_filename
    how_to_fix = (
        "Define it in a .py file (and import or run it), or in a Jupyter notebook or IPython; "
        "a plain `python` prompt and exec() of a string keep no source."
    )
    if code.co_name == "<lambda>":
        raise TemplateSourceError(
            "hyperbrace reads templates from a `def` function, not a lambda: write `def create_model(...):`",
            filename=filename, lineno=code.co_firstlineno,
        )
    lines = linecache.getlines(filename, fn.__globals__)
    if lines:
        text = "".join(lines)
        try:
            tree = _parse(text, filename)
        except SyntaxError:
            tree = None
        node = _find_function(tree, code.co_name, code.co_firstlineno) if tree is not None else None
        if node is not None:
            return text, node, filename
    try:
        block = inspect.getsource(fn)
    except (OSError, TypeError):
        raise TemplateSourceError(
            f"hyperbrace cannot read the source of {fn.__qualname__}() (defined in {filename}), so it cannot find "
            f"its {{{{...}}}} templates. {how_to_fix}",
            filename=filename, lineno=code.co_firstlineno, function=fn.__name__,
        ) from None
    text = textwrap.dedent(block)
    tree = ast.parse(text, filename=filename)
    ast.increment_lineno(tree, code.co_firstlineno - 1)
    node = _find_function(tree, code.co_name, code.co_firstlineno)
    if node is None:
        raise TemplateSourceError(
            f"the source of {fn.__qualname__}() does not match the running function (was the file edited after "
            "it was imported?). Reload or re-run it.",
            filename=filename, lineno=code.co_firstlineno, function=fn.__name__,
        )
    # Line numbers now match the file; offsets refer to the dedented block, so pad it back to the file's lines.
    return "\n" * (code.co_firstlineno - 1) + text, node, filename


def _template_expr(node: ast.AST) -> ast.expr | None:
    """The expression inside ``{{expr}}``, or ``None`` if ``node`` is not a template."""
    if isinstance(node, ast.Set) and len(node.elts) == 1:
        inner = node.elts[0]
        if isinstance(inner, ast.Set) and len(inner.elts) == 1:
            return inner.elts[0]
    return None


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _target_name(target: ast.expr) -> str | None:
    if isinstance(target, ast.Name):
        return target.id
    if isinstance(target, ast.Attribute):
        return target.attr
    if isinstance(target, ast.Subscript):
        key = target.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str) and key.value.isidentifier():
            return key.value
    return None


def _context_word(node: ast.AST, parents: dict[ast.AST, ast.AST], templates: set[ast.AST]) -> str | None:
    """The keyword, called name or assigned name that the template at ``node`` feeds, if any."""
    child = node
    parent = parents.get(child)
    while parent is not None:
        if isinstance(parent, ast.keyword):
            if parent.arg is not None:
                return parent.arg
        elif isinstance(parent, ast.Call):
            if child is parent.func or _is_template_call(parent, parents, templates):
                # ``{{choice([{{uniformint(1, 3)}}, 10])}}``: the outer distribution's name says nothing about
                # the inner template, which falls back to its own distribution's name.
                return None
            return _called_name(parent.func)
        elif isinstance(parent, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = parent.targets if isinstance(parent, ast.Assign) else [parent.target]
            return _target_name(targets[0]) if len(targets) == 1 else None
        elif isinstance(parent, ast.NamedExpr):
            return parent.target.id
        elif isinstance(parent, ast.Dict):
            if child in parent.values:
                key = parent.keys[parent.values.index(child)]
                if isinstance(key, ast.Constant) and isinstance(key.value, str) and key.value.isidentifier():
                    return key.value
            return None
        elif isinstance(parent, (ast.stmt, ast.Lambda, ast.comprehension)) or _is_template_shell(parent, templates):
            return None
        child, parent = parent, parents.get(parent)
    return None


def _is_template_call(call: ast.Call, parents: dict[ast.AST, ast.AST], templates: set[ast.AST]) -> bool:
    """Whether ``call`` is the distribution call of a template (the ``choice(...)`` in ``{{choice(...)}}``)."""
    return parents.get(parents.get(call)) in templates


def _is_template_shell(node: ast.AST, templates: set[ast.AST]) -> bool:
    return node in templates or any(node in t.elts for t in templates if isinstance(t, ast.Set))


# -- checking a template before any trial runs ---------------------------------------------------------------------


class _Opaque:
    """Stands for an argument whose value is only known inside a trial."""

    def __repr__(self) -> str:
        return "<value>"


def _literal(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _Opaque()


def _check_statically(
    site: TemplateSite, call: ast.Call, factory: Callable[..., Distribution]
) -> Distribution | None:
    """Raise the errors that the template's text alone shows (wrong arguments, impossible literal bounds) and
    return the distribution when its arguments are literals."""
    if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
        return None
    args = [_literal(a) for a in call.args]
    kwargs = {k.arg: _literal(k.value) for k in call.keywords}
    try:
        inspect.signature(factory).bind(*args, **kwargs)
    except TypeError as exc:
        signature = f"{site.distribution}{inspect.signature(factory)}".replace(" -> Distribution", "")
        hint = ""
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
        if unknown:
            close = difflib.get_close_matches(unknown.group(1), [*inspect.signature(factory).parameters, "name"], n=1)
            hint = f" (did you mean {close[0]}=?)" if close else ""
        raise site.error(
            f"wrong arguments for {site.distribution}: {exc}{hint}. It takes {signature}, and name=\"...\""
        ) from None
    if site.distribution in ("choice", "pchoice") and call.args and isinstance(call.args[0], (ast.List, ast.Tuple)):
        if not call.args[0].elts:
            raise site.error(f"{site.distribution}: the list of options is empty; give at least one option")
        if site.distribution == "choice":
            args[0] = [_placeholder_option(element) for element in call.args[0].elts]
    values = list(args) + list(kwargs.values())
    if any(isinstance(v, _Opaque) for v in values):
        return None
    try:
        return factory(*args, **kwargs)
    except InvalidDistribution as exc:
        raise site.error(str(exc)) from None


def _placeholder_option(element: ast.expr) -> LazyOption:
    """The option as the rewritten template will pass it, minus the ability to build it."""
    literal = _literal(element)
    text = ast.unparse(element)
    # functools.partial rather than a lambda: the site (and so the compiled model) must pickle for worker processes.
    if not isinstance(literal, _Opaque) and isinstance(literal, (bool, int, float, str, type(None))):
        return LazyOption(functools.partial(_constant, literal), text, literal)
    return LazyOption(functools.partial(_constant, None), text)


def _constant(value: Any) -> Any:
    return value


# -- rewriting -------------------------------------------------------------------------------------------------------


def _load_runtime(attr: str, node: ast.AST) -> ast.expr:
    # A string constant that is swapped for the runtime object in the compiled code (see _inject_runtime): the
    # rewritten function needs no extra global or closure variable, so its free variables, globals and locals()
    # are exactly the original's.
    return ast.copy_location(ast.Attribute(ast.Constant(_RUNTIME), attr, ast.Load()), node)


def _thunk(body: ast.expr) -> ast.Lambda:
    no_args = ast.arguments(posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[])
    return ast.copy_location(ast.Lambda(no_args, body), body)


class _Rewriter(ast.NodeTransformer):
    def __init__(self, sites_by_node: dict[ast.AST, TemplateSite], source: str) -> None:
        self.sites_by_node = sites_by_node
        self.source = source

    def visit_Set(self, node: ast.Set) -> ast.AST:
        site = self.sites_by_node.get(node)
        if site is None:
            return self.generic_visit(node)
        call: ast.Call = _template_expr(node)  # type: ignore[assignment]
        name_expr = next((k.value for k in call.keywords if k.arg == "name"), None)
        call.keywords = [k for k in call.keywords if k.arg != "name"]
        if site.distribution in ("choice", "pchoice") and call.args and isinstance(call.args[0], (ast.List, ast.Tuple)):
            call.args[0] = self._lazy_options(call.args[0], weighted=site.distribution == "pchoice")
        call = self.generic_visit(call)  # templates nested in arguments or options
        if name_expr is not None:
            name_expr = self.visit(name_expr)
        call.func = ast.copy_location(
            ast.Attribute(_load_runtime("distributions", call), site.distribution, ast.Load()), call
        )
        args: list[ast.expr] = [ast.Constant(site.index), _thunk(call)]
        if name_expr is not None:
            args.append(_thunk(name_expr))
        return ast.copy_location(ast.Call(_load_runtime("sample", node), args, []), node)

    def _lazy_options(self, options: ast.List | ast.Tuple, weighted: bool) -> ast.expr:
        def wrap(option: ast.expr) -> ast.expr:
            text = ast.get_source_segment(self.source, option) or ast.unparse(option)
            literal = _literal(option)
            build = _thunk(self.visit(option))
            lazy_args: list[ast.expr] = [build, ast.Constant(text)]
            if not isinstance(literal, _Opaque) and isinstance(literal, (bool, int, float, str, type(None))):
                lazy_args.append(ast.Constant(literal))
            return ast.copy_location(ast.Call(_load_runtime("lazy", option), lazy_args, []), option)

        elts = []
        for element in options.elts:
            if weighted and isinstance(element, ast.Tuple) and len(element.elts) == 2:
                probability, option = element.elts
                elts.append(ast.copy_location(ast.Tuple([self.visit(probability), wrap(option)], ast.Load()), element))
            elif weighted:
                elts.append(self.visit(element))
            else:
                elts.append(wrap(element))
        return ast.copy_location(ast.List(elts, ast.Load()), options)


# -- the runtime the rewritten code calls -------------------------------------------------------------------------


class _Runtime:
    """What a template calls in a rewritten function (the object that replaces the ``_RUNTIME`` constant)."""

    lazy = LazyOption

    def __init__(
        self,
        sites: Sequence[TemplateSite],
        function: str,
        distributions: Mapping[str, Callable[..., Distribution]] | None = None,
    ) -> None:
        self.sites = sites
        self.function = function
        # ``{{loguniform(-10, 0)}}`` calls ``<runtime>.distributions.loguniform``: from the table the model
        # was compiled with (the native meanings, or the Hyperas layer's hyperopt meanings).
        self.distributions = types.SimpleNamespace(**(distributions or space.DISTRIBUTIONS))

    @staticmethod
    def returned(line: int, value: Any) -> Any:
        context = current_trial()
        if context is not None:
            context.extras["hb.return_line"] = line
        return value

    def sample(self, index: int, make_distribution: Callable[[], Distribution], make_name=None) -> Any:
        site = self.sites[index]
        context = current_trial()
        if context is None:
            raise site.error(
                f"a {{{{...}}}} template has a value only inside a search: run {self.function}() through "
                f"hyperbrace.minimize(), or call hyperbrace.evaluate({self.function}, params) to run it with fixed "
                "values"
            )
        try:
            distribution = make_distribution()
        except InvalidDistribution as exc:
            raise site.error(str(exc)) from None
        if make_name is None:
            name = site.name
        else:
            name = make_name()
            if not isinstance(name, str) or not name:
                raise site.error(f"name= must give a non-empty string, it gave {name!r}")
        if name in context.sampled:
            previous, raw, previous_site = context.sampled[name]
            if not previous.same_as(distribution):
                raise site.error(_name_clash(name, previous_site, previous, distribution))
        else:
            try:
                raw = context.suggest_raw(name, distribution)
            except ValueError as exc:  # Optuna: this name had another kind of distribution in earlier trials
                raise site.error(f"cannot sample {name!r}: {exc}") from None
            context.sampled[name] = (distribution, raw, site)
            context.values[name] = distribution.record(raw)
        return distribution.to_value(raw)


# -- one compiled function, and the model made of them ------------------------------------------------------------

#: The compiler flags of every ``from __future__ import ...`` (a function's code object keeps its file's flags).
_FUTURE_FLAGS = functools.reduce(
    lambda flags, name: flags | getattr(__future__, name).compiler_flag, __future__.all_feature_names, 0
)


@dataclass
class _Unit:
    """One function of the user's code whose templates are rewritten: the model function or a helper it calls."""

    function: types.FunctionType  #: the function object whose code is swapped during a call (or copied)
    module: ast.Module = field(repr=False)  #: ``def factory(<free variables>): [class C:] <the rewritten def>``
    filename: str
    flags: int  #: the source file's ``__future__`` flags
    class_name: str | None  #: the class a method is compiled in, for name mangling and ``super()``

    def code(self, runtime: _Runtime) -> types.CodeType:
        original = self.function.__code__
        inner = self._compile(original.co_name)
        lost = [name for name in original.co_freevars if name not in inner.co_freevars]
        if lost:
            # A closure variable used only as a template's distribution (``choice`` imported inside the enclosing
            # function) is no longer used once rewritten; the code must keep it, since the closure holds a cell
            # for it: ``if False: choice`` makes it free again, and compiles to nothing.
            _keep_free(self.module, original.co_name, lost)
            inner = self._compile(original.co_name)
        inner = _inject_runtime(inner, runtime)
        if inner.co_freevars != original.co_freevars:  # cannot happen for a faithful compile; never run it wrong
            raise TemplateError(
                f"hyperbrace could not compile {self.function.__qualname__}() with the same closure variables "
                f"({inner.co_freevars} vs {original.co_freevars}); please report this with the function's code",
                filename=self.filename, lineno=original.co_firstlineno, function=self.function.__name__,
            )
        return inner


    def _compile(self, name: str) -> types.CodeType:
        code = compile(self.module, self.filename, "exec", flags=self.flags, dont_inherit=True)
        factory = _const_code(code, _FACTORY)
        holder = _const_code(factory, self.class_name) if self.class_name else factory
        return _const_code(holder, name)


def _keep_free(module: ast.Module, name: str, names: Sequence[str]) -> None:
    factory = module.body[0]
    function = next(n for n in ast.walk(factory) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and n.name == name)
    body = function.body
    at = 1 if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
        and isinstance(body[0].value.value, str) else 0
    keep = ast.If(ast.Constant(False), [ast.Expr(ast.Name(n, ast.Load())) for n in names], [])
    body.insert(at, ast.copy_location(keep, body[0]))
    ast.fix_missing_locations(module)


def _const_code(code: types.CodeType, name: str | None) -> types.CodeType:
    return next(c for c in code.co_consts if isinstance(c, types.CodeType) and c.co_name == name)


def _inject_runtime(code: types.CodeType, runtime: _Runtime) -> types.CodeType:
    """``code`` (and the functions nested in it) with the ``_RUNTIME`` placeholder constant replaced by ``runtime``."""
    consts = tuple(
        runtime if type(c) is str and c == _RUNTIME else _inject_runtime(c, runtime) if isinstance(c, types.CodeType)
        else c
        for c in code.co_consts
    )
    return code.replace(co_consts=consts)


@dataclass
class CompiledModel:
    """A model function with its templates (and those of the helpers it calls) rewritten.

    Call it like the original, inside a trial. During the call, the rewritten code runs in the user's own function
    objects (their ``__code__`` is swapped, and put back after), so everything else is exactly the original:
    decorators as written, ``functools.wraps`` or not; recursion and attributes on the function
    (``create_model.calls += 1``); globals read and written; closures, defaults, ``__name__``, ``__doc__``...
    """

    original: Callable[..., Any]  #: what was passed, decorators included
    sites: list[TemplateSite]
    filename: str
    _units: list[_Unit] = field(repr=False)
    _model_function: types.FunctionType = field(repr=False)
    returns: list[tuple[int, str]] = field(default_factory=list)  #: the model's ``return`` lines (number, text)
    _globals_overlay: dict[str, Any] | None = field(default=None, repr=False)
    _distributions: dict[str, Callable[..., Distribution]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._codes: list[types.CodeType] | None = None
        self._entry: Callable[..., Any] | None = None
        self._saved: list[types.CodeType] = []
        self._depth = 0

    @property
    def name(self) -> str:
        return self._model_function.__name__

    @property
    def lineno(self) -> int:
        return self._model_function.__code__.co_firstlineno

    @property
    def function(self) -> Callable[..., Any]:
        """What a call runs (the original, decorators included; a copy seeing extra globals in the Hyperas layer)."""
        self._build()
        return self._entry  # type: ignore[return-value]

    def _build(self) -> None:
        if self._codes is not None:
            return
        runtime = _Runtime(self.sites, self.name, self._distributions)
        self._codes = [unit.code(runtime) for unit in self._units]
        if self._globals_overlay is None:
            self._entry = self.original
        else:  # the Hyperas layer: a copy of the model (units[0]) that also sees data()'s local variables
            self._entry = _copy_with_globals(self.original, self._codes[0], self._globals_overlay)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._build()
        in_place = list(zip(self._units, self._codes))[0 if self._globals_overlay is None else 1:]
        if self._depth == 0:
            self._saved = [unit.function.__code__ for unit, _ in in_place]
            for unit, code in in_place:
                unit.function.__code__ = code
        self._depth += 1
        try:
            return self._entry(*args, **kwargs)
        finally:
            self._depth -= 1
            if self._depth == 0:
                for (unit, _), code in zip(in_place, self._saved):
                    unit.function.__code__ = code

    def __getstate__(self) -> dict[str, Any]:
        # The rewritten code is rebuilt from the syntax trees where it is unpickled (a worker process), so no
        # source file is needed there: notebooks and edited files work. The functions pickle as cloudpickle
        # pickles them (by reference from a module, by value from a notebook or __main__), never while swapped.
        state = dict(self.__dict__)
        for key in ("_codes", "_entry", "_saved", "_depth"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__post_init__()


def _copy_with_globals(original: Callable[..., Any], code: types.CodeType, overlay: dict[str, Any]) -> Callable[..., Any]:
    bound_to = original.__self__ if isinstance(original, types.MethodType) else None
    original = original.__func__ if isinstance(original, types.MethodType) else original
    namespace = {**original.__globals__, **overlay}
    function = types.FunctionType(code, namespace, original.__name__, original.__defaults__, original.__closure__)
    function.__kwdefaults__ = original.__kwdefaults__
    function.__qualname__ = original.__qualname__
    function.__module__ = original.__module__
    function.__doc__ = original.__doc__
    function.__annotations__ = dict(getattr(original, "__annotations__", {}))
    function.__dict__.update(original.__dict__)
    return function if bound_to is None else types.MethodType(function, bound_to)


# -- compiling ---------------------------------------------------------------------------------------------------


def compile_model(
    fn: Callable[..., Any],
    *,
    naming: Naming = native_names,
    globals_overlay: dict[str, Any] | None = None,
    distributions: Mapping[str, Callable[..., Distribution]] | None = None,
) -> CompiledModel:
    """Parse the templates of ``fn`` and of the functions of your code it calls; return the rewritten model.

    Templates may be written in the model function and in any function of your own project it reaches (helpers
    in this or another module, imported under any name, nested, methods; see :mod:`hyperbrace._reach`). The
    model's templates come first, then each helper's, in the order they are first used; names repeated across
    functions get ``_1``, ``_2``... as within one.

    ``naming`` maps one function's sites to parameter names (the Hyperas layer passes Hyperas' rule).
    ``globals_overlay`` adds names the model function can see (the Hyperas layer passes ``data()``'s locals).
    ``distributions`` is the table of the distributions a template may call, by name (default
    :data:`hyperbrace.space.DISTRIBUTIONS`; the Hyperas layer passes hyperopt's meanings).

    Raises :class:`TemplateError` for any template that cannot work (unknown distribution, wrong arguments,
    impossible literal bounds, a template in an installed package), naming the file, the line and the template.

    >>> def block(units):
    ...     return units * {{choice([1, 2], name=f"scale_{units}")}}
    >>> def model():
    ...     lr = {{uniform(0, 1)}}
    ...     return block(8) + block(16) + lr
    >>> compiled = compile_model(model)
    >>> [(site.function, site.name) for site in compiled.sites]
    [('model', 'lr'), ('block', 'f"scale_{units}"')]
    """
    from hyperbrace._reach import reachable_functions

    if isinstance(fn, CompiledModel):
        return fn
    unwrapped = inspect.unwrap(fn)
    model_function = unwrapped.__func__ if isinstance(unwrapped, types.MethodType) else unwrapped
    if not isinstance(model_function, types.FunctionType):
        raise TypeError(f"minimize() needs a model function defined with `def`, got {fn!r}")
    # The Hyperas layer runs the model without its decorators, as Hyperas did (it pasted the body into a file).
    entry = fn if globals_overlay is None else unwrapped
    table = dict(space.DISTRIBUTIONS if distributions is None else distributions)

    functions = [model_function] + [
        f for f in reachable_functions(entry, globals_overlay, _check_library_function) if f is not model_function
    ]
    units: list[_Unit] = []
    per_unit: list[list[TemplateSite]] = []
    sites: list[TemplateSite] = []
    returns: list[tuple[int, str]] = []
    for function in functions:
        is_model = function is model_function
        if not is_model and not _may_hold_template(function):
            continue  # most helpers: no "{{" in their lines, so no need to parse their file
        try:
            source, node, filename = _read_source(function)
        except TemplateSourceError as exc:
            if is_model:
                raise
            if _builds_a_set_of_a_set(function.__code__):
                raise TemplateSourceError(
                    f"{function.__qualname__}(), which the model calls, seems to hold a {{{{...}}}} template (its code "
                    f"builds a set of a set) but its source cannot be read, so it cannot be compiled. Define it in a "
                    ".py file or a notebook cell (exec() of a string keeps no source), or write the template in the "
                    "model and pass the value as an argument",
                    filename=exc.filename, lineno=exc.lineno, function=function.__name__,
                ) from None
            continue
        if not is_model and not any(_template_expr(n) is not None for n in ast.walk(node)):
            continue
        node = copy.deepcopy(node)  # the rewriter edits the tree
        if is_model:
            returns = _return_lines(node, source)
        unit_sites, template_nodes = _sites_of(node, source, filename, function, table, first_index=len(sites))
        for site, name in zip(unit_sites, naming(unit_sites, source)):
            site.name = name
        sites.extend(unit_sites)
        per_unit.append(unit_sites)
        rewritten = _Rewriter(dict(zip(template_nodes, unit_sites)), source).visit(node)
        if is_model:
            _mark_returns(rewritten)
        class_name = _class_name(function)
        units.append(_Unit(
            function, _factory_module(rewritten, function, class_name), filename,
            function.__code__.co_flags & _FUTURE_FLAGS, class_name,
        ))
    _separate_names_across_functions(per_unit)
    _check_explicit_names(sites)
    model_filename = model_function.__code__.co_filename
    return CompiledModel(
        fn if globals_overlay is None else unwrapped, sites, model_filename, units, model_function, returns,
        globals_overlay, None if distributions is None else table,
    )


def _sites_of(
    node: ast.FunctionDef, source: str, filename: str, function: types.FunctionType,
    table: Mapping[str, Callable[..., Distribution]], first_index: int,
) -> tuple[list[TemplateSite], list[ast.AST]]:
    """The templates in one function's syntax tree, in source order, checked as far as their text allows."""
    parents: dict[ast.AST, ast.AST] = {}
    for parent in ast.walk(node):
        for child in ast.iter_child_nodes(parent):
            parents[child] = parent
    template_nodes = sorted(
        (n for n in ast.walk(node) if _template_expr(n) is not None), key=lambda n: (n.lineno, n.col_offset)
    )
    template_set = set(template_nodes)
    lines = _source_lines(source)
    sites: list[TemplateSite] = []
    for index, template in enumerate(template_nodes, start=first_index):
        text = ast.get_source_segment(source, template) or ast.unparse(template)
        expr = _template_expr(template)
        site = TemplateSite(
            index=index, text=text, distribution="", filename=filename, lineno=template.lineno,
            col=template.col_offset, offset=_char_offset(lines, template.lineno, template.col_offset),
            context=_context_word(template, parents, template_set), function=function.__name__,
        )
        dist_name = _called_name(expr.func) if isinstance(expr, ast.Call) else None
        if dist_name not in table:
            known = ", ".join(table)
            what = f"unknown distribution {dist_name!r}" if dist_name else "a template must hold one distribution call"
            close = difflib.get_close_matches(dist_name or "", list(table), n=1)
            hint = f"did you mean {close[0]}? Write {text.replace(dist_name, close[0], 1)}; " if close and dist_name else ""
            raise site.error(f"{what}; {hint or 'write e.g. {{uniform(0, 1)}} or {{choice([256, 512])}}; '}(known: {known})")
        site.distribution = dist_name
        name_kw = next((k for k in expr.keywords if k.arg == "name"), None)
        if name_kw is not None:
            if isinstance(name_kw.value, ast.Constant) and isinstance(name_kw.value.value, str):
                site.explicit_name = name_kw.value.value
            else:
                site.explicit_name = ast.get_source_segment(source, name_kw.value) or ast.unparse(name_kw.value)
                site.dynamic_name = True
        checked = ast.Call(expr.func, expr.args, [k for k in expr.keywords if k.arg != "name"])
        site.static_distribution = _check_statically(site, checked, table[dist_name])
        sites.append(site)
    return sites, template_nodes


def _separate_names_across_functions(per_unit: Sequence[Sequence[TemplateSite]]) -> None:
    """A helper's name that an earlier function (the model first) already uses gets the next free ``_N`` suffix, as
    a repeat within one function does; the model's own names never change, and explicit names are kept."""
    explicit = {s.explicit_name for unit in per_unit for s in unit if s.explicit_name and not s.dynamic_name}
    taken: set[str] = set()
    for unit in per_unit:
        own = {site.name for site in unit}
        for site in unit:
            if site.explicit_name is None and site.name in taken:
                base, number = site.name, 1
                while f"{base}_{number}" in taken | own | explicit:
                    number += 1
                own.add(f"{base}_{number}")
                site.name = f"{base}_{number}"
        taken |= {site.name for site in unit}


def _class_name(function: types.FunctionType) -> str | None:
    """The class a method is defined in (``Builder.build`` -> ``Builder``): its body gives private names their
    mangled form (``self.__secret`` -> ``self._Builder__secret``) and ``super()`` its class."""
    parts = function.__qualname__.split(".")[:-1]
    return parts[-1] if parts and parts[-1] != "<locals>" else None


def _mark_returns(node: ast.FunctionDef) -> None:
    """``return value`` -> ``return <runtime>.returned(line, value)``: the trial learns which ``return`` ended the
    model, so that a message about the value (a NaN loss, an array) names that line."""

    def walk(n: ast.AST) -> None:
        for child in ast.iter_child_nodes(n):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                continue
            if isinstance(child, ast.Return) and child.value is not None:
                call = ast.Call(_load_runtime("returned", child), [ast.Constant(child.lineno), child.value], [])
                child.value = ast.copy_location(call, child.value)
            walk(child)

    for statement in node.body:
        walk(ast.Module(body=[statement], type_ignores=[]))
    ast.fix_missing_locations(node)


def _return_lines(node: ast.FunctionDef, source: str) -> list[tuple[int, str]]:
    """The function's own ``return value`` statements (not those of functions nested in it): line and text."""
    found: list[tuple[int, str]] = []

    def walk(n: ast.AST) -> None:
        for child in ast.iter_child_nodes(n):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                continue
            if isinstance(child, ast.Return) and child.value is not None:
                text = ast.get_source_segment(source, child) or ast.unparse(child)
                found.append((child.lineno, " ".join(text.split())))
            walk(child)

    walk(node)
    return found


def _last_line(code: types.CodeType) -> int:
    lines = [line for _, _, line in code.co_lines() if line is not None]
    nested = [_last_line(c) for c in code.co_consts if isinstance(c, types.CodeType)]
    return max(lines + nested + [code.co_firstlineno])


def _may_hold_template(function: types.FunctionType) -> bool:
    """Whether the function's lines (as its code object spans them) contain ``{{`` at all, or cannot be read."""
    code = function.__code__
    lines = linecache.getlines(code.co_filename, function.__globals__)
    if not lines:
        return True  # no source: _read_source decides (and the bytecode check)
    return "{{" in "".join(lines[code.co_firstlineno - 1:_last_line(code)])


def _builds_a_set_of_a_set(code: types.CodeType) -> bool:
    """Whether the bytecode builds ``{{x}}``: a one-element set put straight into another one-element set."""
    import dis

    previous = None
    for instruction in dis.get_instructions(code):
        if instruction.opname == "BUILD_SET" and instruction.arg == 1 and previous == ("BUILD_SET", 1):
            return True
        previous = (instruction.opname, instruction.arg)
    return any(_builds_a_set_of_a_set(c) for c in code.co_consts if isinstance(c, types.CodeType))


def _check_library_function(function: types.FunctionType) -> None:
    """Raise if a function of an installed package (or the standard library) that the user's code calls holds a
    template: hyperbrace compiles only the user's own code, and it would fail as ``unhashable type: 'set'``."""
    try:
        lines, first = inspect.getsourcelines(function)
    except (OSError, TypeError):
        return
    text = "".join(lines)
    if "{{" not in text:
        return
    try:
        tree = ast.parse(textwrap.dedent(text))
    except SyntaxError:
        return
    for node in ast.walk(tree):
        if _template_expr(node) is not None:
            segment = ast.get_source_segment(textwrap.dedent(text), node) or ast.unparse(node)
            raise TemplateError(
                f"{function.__qualname__}() holds a {{{{...}}}} template but is in an installed package, whose "
                "code hyperbrace does not compile. Templates may be written in the model function and in the "
                "functions of your own project it calls: install your project in editable mode (`pip install "
                "-e .`), or write the template in your model and pass its value to this function as an argument",
                filename=function.__code__.co_filename, lineno=first + node.lineno - 1, text=segment,
                function=function.__name__,
            )


def uncompiled_template_error(error: BaseException) -> TemplateError | None:
    """The :class:`TemplateError` that explains ``error`` if it is Python's ``unhashable type: 'set'`` from a
    ``{{...}}`` template that was not compiled (module level, an installed package, a function hyperbrace did not
    reach, code without source); ``None`` for any other error.

    >>> def helper():  # not compiled: called here directly, outside any search
    ...     return {{uniform(0, 1)}}
    >>> try:
    ...     helper()
    ... except NameError as exc:  # `uniform` is not imported here; with the import: unhashable type: 'set'
    ...     print(uncompiled_template_error(exc).message[:61])
    a {{...}} template in helper(), which hyperbrace did not find
    >>> uncompiled_template_error(ValueError("something else")) is None
    True
    """
    from hyperbrace._reach import is_user_file

    message = str(error)
    uncompiled = (
        isinstance(error, TypeError) and "unhashable type: 'set'" in message
        # Run as plain Python, a template calls the distribution itself: without its import, or with name=.
        or isinstance(error, NameError) and getattr(error, "name", None) in space.DISTRIBUTIONS
        or isinstance(error, TypeError) and message.split("(")[0] in space.DISTRIBUTIONS and "'name'" in message
    )
    if not uncompiled:
        return None
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return None
    frame = frames[-1]
    lines = linecache.getlines(frame.filename)
    end = getattr(frame, "end_lineno", None) or frame.lineno
    text = "".join(lines[frame.lineno - 1:end]) if lines else (frame.line or "")
    if not lines and not frame.line:
        return TemplateError(
            f"{frame.name}() failed with `unhashable type: 'set'` in code whose source cannot be read: if this line "
            "holds a {{...}} template, it was not compiled. Define the function in a .py file or a notebook cell "
            "(exec() of a string keeps no source), or write the template in the model and pass the value as an "
            "argument", filename=frame.filename, lineno=frame.lineno, function=frame.name,
        )
    if "{{" not in text:
        return None
    where = dict(filename=frame.filename, lineno=frame.lineno, text=" ".join(text.split()), function=frame.name)
    move = "write it in the model function or a function of your own code that the model calls, or choose the " \
           "value in the model and pass it as an argument"
    if frame.name == "<module>":
        return TemplateError(
            f"a {{{{...}}}} template at module level (outside any function) has no value: templates are read from "
            f"functions. Move it into the model function or a function it calls (a builder such as build_model()), "
            f"or {move.split(', or ')[1]}", **where,
        )
    if not is_user_file(frame.filename):
        return TemplateError(
            f"a {{{{...}}}} template in {frame.name}(), in an installed package or code without source, is not "
            f"compiled: install your project in editable mode (`pip install -e .`), or {move}", **where,
        )
    return TemplateError(
        f"a {{{{...}}}} template in {frame.name}(), which hyperbrace did not find from the model function: it "
        "compiles the functions the model (and its helpers) refer to by name, methods of the classes they use, and "
        "functions nested in them, not functions reached only through a list, a dict, getattr() or a lambda. "
        f"Refer to {frame.name} by name where it is called, or {move}", **where,
    )


def _check_explicit_names(sites: Sequence[TemplateSite]) -> None:
    """Templates that share a literal ``name=`` share one value, so they must describe the same distribution.

    Checked here, before any trial, where both distributions are known from the text (a clash in a branch that
    rarely runs would otherwise surface only deep into a search); the rest are checked when they are sampled.
    """
    first: dict[str, TemplateSite] = {}
    for site in sites:
        if site.explicit_name is None or site.dynamic_name or site.static_distribution is None:
            continue
        previous = first.setdefault(site.explicit_name, site)
        if previous is not site and not previous.static_distribution.same_as(site.static_distribution):
            raise site.error(
                _name_clash(site.explicit_name, previous, previous.static_distribution, site.static_distribution)
            )


def _name_clash(name: str, previous_site: TemplateSite, previous: Distribution, distribution: Distribution) -> str:
    return (
        f"the name {name!r} is also used by {previous_site.text} (line {previous_site.lineno}) with a different "
        f"distribution ({previous!r} vs {distribution!r}); give one of them another name="
    )


def _source_lines(source: str) -> list[tuple[int, str]]:
    """Each line's character offset in ``source`` and its text, split where :mod:`ast` counts lines.

    (``str.splitlines`` also splits at form feeds and other separators that Python does not count as line ends.)
    """
    lines, start = [], 0
    for match in re.finditer(r"\r\n|\r|\n", source):
        lines.append((start, source[start:match.start()]))
        start = match.end()
    lines.append((start, source[start:]))
    return lines


def _char_offset(lines: list[tuple[int, str]], lineno: int, col_offset: int) -> int:
    """The character offset in the source of an ast position (whose column counts UTF-8 bytes, not characters)."""
    start, text = lines[lineno - 1]
    return start + len(text.encode("utf-8")[:col_offset].decode("utf-8", errors="ignore"))


def _factory_module(function_def: ast.FunctionDef, fn: types.FunctionType, class_name: str | None) -> ast.Module:
    """``def factory(<free variables>): [class C:] <function>``: the compiler then gives the rewritten code the
    original's free variables (in the same order), and a method its class's name mangling and ``__class__``."""
    free = [name for name in fn.__code__.co_freevars if not (class_name and name == "__class__")]
    params = [ast.arg(name) for name in free]
    arguments = ast.arguments(posonlyargs=[], args=params, vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[])
    body: list[ast.stmt] = [function_def]
    # The def (and the class) would bind their names in the factory, making the function's own name a closure
    # variable of itself (recursion, `model.calls += 1`): declared global, they stay what they are in the original.
    bound = [n for n in dict.fromkeys([function_def.name, class_name]) if n and n not in free]
    if class_name:
        holder = ast.ClassDef(name=class_name, bases=[], keywords=[], body=[function_def], decorator_list=[])
        if sys.version_info >= (3, 12):
            holder.type_params = []
        body = [ast.copy_location(holder, function_def)]
    factory = ast.FunctionDef(
        name=_FACTORY, args=arguments, body=[*([ast.Global(bound)] if bound else []), *body, ast.Return(ast.Constant(None))],
        decorator_list=[], returns=None,
    )
    if sys.version_info >= (3, 12):
        factory.type_params = []
    ast.copy_location(factory, function_def)
    module = ast.Module(body=[factory], type_ignores=[])
    return ast.fix_missing_locations(module)


def install_excepthook() -> None:
    """Explain a template at module level (or in code hyperbrace does not compile) where Python stops on it.

    Python reads ``{{...}}`` outside a compiled function as a set of sets and stops with ``TypeError: unhashable
    type: 'set'``; the hook (chained to the previous one, installed once) shows the :class:`TemplateError` that
    says where templates may be written, after the original traceback.

    >>> install_excepthook()  # done when hyperbrace is imported; again, it changes nothing
    >>> getattr(sys.excepthook, "_hyperbrace", False)
    True
    """
    previous = sys.excepthook
    if getattr(previous, "_hyperbrace", False):
        return

    def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        error = uncompiled_template_error(value) if value is not None else None
        if error is not None:
            error.__cause__ = value
            previous(TemplateError, error, None)
        else:
            previous(kind, value, tb)

    hook._hyperbrace = True  # type: ignore[attr-defined]
    sys.excepthook = hook
