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

import ast
import copy
import functools
import inspect
import linecache
import re
import sys
import textwrap
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hyperbrace import space
from hyperbrace._context import current_trial
from hyperbrace.space import Distribution, InvalidDistribution, LazyOption

__all__ = ["TemplateError", "TemplateSite", "CompiledModel", "compile_model"]

_RUNTIME = "__hyperbrace__"
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


# -- reading the source ----------------------------------------------------------------------------------------


def _find_function(tree: ast.AST, name: str, firstlineno: int) -> ast.FunctionDef | None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            if firstlineno in (first, node.lineno):
                return node
    return None


def _read_source(fn: types.FunctionType) -> tuple[str, ast.FunctionDef, str]:
    """The text the function's line numbers refer to, its parsed ``def``, and the file name."""
    code = fn.__code__
    filename = code.co_filename
    how_to_fix = (
        "Define it in a .py file (and import or run it), or in a Jupyter notebook or IPython; "
        "a plain `python` prompt and exec() of a string keep no source."
    )
    if fn.__name__ == "<lambda>":
        raise TemplateSourceError(
            "hyperbrace reads templates from a `def` function, not a lambda: write `def create_model(...):`",
            filename=filename, lineno=code.co_firstlineno,
        )
    lines = linecache.getlines(filename, fn.__globals__)
    if lines:
        text = "".join(lines)
        try:
            tree = ast.parse(text, filename=filename)
        except SyntaxError:
            tree = None
        node = _find_function(tree, fn.__name__, code.co_firstlineno) if tree is not None else None
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
    node = _find_function(tree, fn.__name__, code.co_firstlineno)
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
        raise site.error(f"wrong arguments for {site.distribution}: {exc}. It takes {signature}") from None
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
    return ast.copy_location(ast.Attribute(ast.Name(_RUNTIME, ast.Load()), attr, ast.Load()), node)


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
    """What ``__hyperbrace__`` is inside a rewritten function."""

    lazy = LazyOption

    def __init__(
        self,
        sites: Sequence[TemplateSite],
        function: str,
        distributions: Mapping[str, Callable[..., Distribution]] | None = None,
    ) -> None:
        self.sites = sites
        self.function = function
        # ``{{loguniform(-10, 0)}}`` calls ``__hyperbrace__.distributions.loguniform``: from the table the model
        # was compiled with (the native meanings, or the Hyperas layer's hyperopt meanings).
        self.distributions = types.SimpleNamespace(**(distributions or space.DISTRIBUTIONS))

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


@dataclass
class CompiledModel:
    """A model function with its templates rewritten. Call it like the original, inside a trial."""

    original: Callable[..., Any]
    sites: list[TemplateSite]
    filename: str
    _module: ast.Module = field(repr=False)
    _globals_overlay: dict[str, Any] | None = field(default=None, repr=False)
    _distributions: dict[str, Callable[..., Distribution]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.function = _build(
            self.original, self._module, self.filename, self.sites, self._globals_overlay, self._distributions
        )

    @property
    def name(self) -> str:
        return self.original.__name__

    @property
    def lineno(self) -> int:
        return self.original.__code__.co_firstlineno

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        # The rewritten function is rebuilt from the syntax tree where it is unpickled (a worker process), so
        # no source file is needed there: notebooks and edited files work.
        state = dict(self.__dict__)
        state.pop("function", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__post_init__()


def _build(
    original: Callable[..., Any],
    module: ast.Module,
    filename: str,
    sites: Sequence[TemplateSite],
    overlay: dict[str, Any] | None,
    distributions: Mapping[str, Callable[..., Distribution]] | None = None,
) -> Callable[..., Any]:
    bound_to = original.__self__ if isinstance(original, types.MethodType) else None
    original = original.__func__ if isinstance(original, types.MethodType) else original
    code = compile(module, filename, "exec", dont_inherit=True)
    factory = next(c for c in code.co_consts if isinstance(c, types.CodeType) and c.co_name == _FACTORY)
    inner = next(c for c in factory.co_consts if isinstance(c, types.CodeType) and c.co_name == original.__name__)
    cells = dict(zip(original.__code__.co_freevars, original.__closure__ or ()))
    cells[_RUNTIME] = types.CellType(_Runtime(sites, original.__name__, distributions))
    closure = tuple(cells[name] if name in cells else types.CellType() for name in inner.co_freevars)
    namespace = original.__globals__ if overlay is None else {**original.__globals__, **overlay}
    function = types.FunctionType(inner, namespace, original.__name__, original.__defaults__, closure or None)
    function.__kwdefaults__ = original.__kwdefaults__
    function.__qualname__ = original.__qualname__
    function.__module__ = original.__module__
    function.__doc__ = original.__doc__
    function.__annotations__ = dict(getattr(original, "__annotations__", {}))
    function.__dict__.update(original.__dict__)
    return function if bound_to is None else types.MethodType(function, bound_to)


def compile_model(
    fn: Callable[..., Any],
    *,
    naming: Naming = native_names,
    globals_overlay: dict[str, Any] | None = None,
    distributions: Mapping[str, Callable[..., Distribution]] | None = None,
) -> CompiledModel:
    """Parse ``fn``'s templates and return the rewritten function with its template sites.

    ``naming`` maps the sites to parameter names (the Hyperas layer passes Hyperas' rule). ``globals_overlay``
    adds names the function can see (the Hyperas layer passes ``data()``'s locals). ``distributions`` is the table
    of the distributions a template may call, by name (default :data:`hyperbrace.space.DISTRIBUTIONS`; the Hyperas
    layer passes hyperopt's meanings).

    Raises :class:`TemplateError` for any template that cannot work (unknown distribution, wrong arguments,
    impossible literal bounds), naming the file, the line and the template.
    """
    if isinstance(fn, CompiledModel):
        return fn
    fn = inspect.unwrap(fn)
    # A bound method (``trainer.create_model``) is compiled from its function and bound again when built.
    function = fn.__func__ if isinstance(fn, types.MethodType) else fn
    if not isinstance(function, types.FunctionType):
        raise TypeError(f"minimize() needs a model function defined with `def`, got {fn!r}")
    table = dict(space.DISTRIBUTIONS if distributions is None else distributions)
    source, node, filename = _read_source(function)
    node = _strip_decorators(node)

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
    for index, template in enumerate(template_nodes):
        text = ast.get_source_segment(source, template) or ast.unparse(template)
        expr = _template_expr(template)
        site = TemplateSite(
            index=index, text=text, distribution="", filename=filename, lineno=template.lineno,
            col=template.col_offset, offset=_char_offset(lines, template.lineno, template.col_offset),
            context=_context_word(template, parents, template_set), function=fn.__name__,
        )
        dist_name = _called_name(expr.func) if isinstance(expr, ast.Call) else None
        if dist_name not in table:
            known = ", ".join(table)
            what = f"unknown distribution {dist_name!r}" if dist_name else "a template must hold one distribution call"
            raise site.error(f"{what}; write e.g. {{{{uniform(0, 1)}}}} or {{{{choice([256, 512])}}}} (known: {known})")
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

    for site, name in zip(sites, naming(sites, source)):
        site.name = name
    _check_explicit_names(sites)

    rewritten = _Rewriter({t: s for t, s in zip(template_nodes, sites)}, source).visit(node)
    module = _factory_module(rewritten, function)
    return CompiledModel(fn, sites, filename, module, globals_overlay, None if distributions is None else table)


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


def _strip_decorators(node: ast.FunctionDef) -> ast.FunctionDef:
    # A copy, since the rewriter edits the tree; the decorators already ran on the original function.
    node = copy.deepcopy(node)
    node.decorator_list = []
    return node


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


def _factory_module(function_def: ast.FunctionDef, fn: types.FunctionType) -> ast.Module:
    """``def factory(<free variables>, __hyperbrace__): <function>``: gives the code the original's closure."""
    params = [ast.arg(name) for name in (*fn.__code__.co_freevars, _RUNTIME)]
    arguments = ast.arguments(posonlyargs=[], args=params, vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[])
    factory = ast.FunctionDef(
        name=_FACTORY, args=arguments, body=[function_def, ast.Return(ast.Name(fn.__name__, ast.Load()))],
        decorator_list=[], returns=None,
    )
    if sys.version_info >= (3, 12):
        factory.type_params = []
    ast.copy_location(factory, function_def)
    module = ast.Module(body=[factory], type_ignores=[])
    return ast.fix_missing_locations(module)
