"""Templates in helpers, and a compiled model that behaves exactly as the original (issue 9, parts 1 and 2).

Every model runs inside a real Optuna trial (tests/test_template.py's ``run``); the helpers live here, in
tests/helpers/blocks.py (another module of the project, imported under an alias) and in generated files.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cloudpickle
import optuna
import pytest

import helpers.blocks as blk
from helpers.blocks import BlockBuilder, dropout_rate as rate
from hyperbrace._context import TrialContext, active
from hyperbrace.template import TemplateError, compile_model

from test_template import names, run


# -- templates in helpers ------------------------------------------------------------------------------------------


def local_helper(x):
    return x * {{choice([1, 2], name="scale")}}


def model_with_a_local_helper():
    lr = {{uniform(0, 1)}}
    return local_helper(10) + lr


def test_helper_in_the_same_module():
    assert names(model_with_a_local_helper) == ["lr", "scale"]
    value, context = run(model_with_a_local_helper)
    assert value == 10 * context.values["scale"] + context.values["lr"]


def model_with_helpers_from_another_module():
    x = blk.build_block(0, 1) + blk.build_block(0, 2)  # called twice, a parameter per call through name=f"..."
    return x + rate()


def test_helper_in_another_module_imported_under_an_alias_called_twice():
    compiled = compile_model(model_with_helpers_from_another_module)
    assert [(s.function, s.name) for s in compiled.sites] == [
        ("build_block", 'f"units_{i}"'), ("dropout_rate", "uniform"),
    ]
    assert compiled.sites[0].filename == blk.__file__
    assert compiled.sites[0].lineno == blk.build_block.__code__.co_firstlineno + 2
    value, context = run(model_with_helpers_from_another_module)
    assert set(context.values) == {"units_1", "units_2", "uniform"}
    assert value == context.values["units_1"] + context.values["units_2"] + context.values["uniform"]
    # Outside a call the helpers are exactly the user's functions again (plain Python rejects the name= keyword).
    with pytest.raises(TypeError, match="unexpected keyword argument 'name'"):
        blk.build_block(0, 1)


def model_with_a_method_helper():
    return BlockBuilder().build(5)


def test_method_helper_with_private_names_and_self_calls():
    assert names(model_with_a_method_helper) == ["factor"]
    value, context = run(model_with_a_method_helper)
    assert value == 5 * context.values["factor"] * 3


def test_nested_helper_inside_a_helper_and_helpers_of_helpers():
    def inner_block(units):
        return units + {{choice([100, 200], name="inner")}}

    def outer_block():
        return inner_block({{choice([1, 2], name="outer")}})

    def create_model():
        def nested():
            return {{choice([5, 6], name="nested")}}

        return outer_block() + nested()

    assert names(create_model) == ["nested", "outer", "inner"]
    value, context = run(create_model)
    assert value == sum(context.values.values())


def helper_with_context_name():
    lr = {{uniform(0, 1)}}
    return lr


def test_names_repeated_across_functions_get_suffixes_and_the_model_keeps_its_names():
    def create_model():
        lr = {{uniform(0, 1)}}
        return lr + helper_with_context_name()

    assert names(create_model) == ["lr", "lr_1"]
    value, context = run(create_model)
    assert value == context.values["lr"] + context.values["lr_1"]


def test_helper_reached_only_through_a_dict_fails_with_a_template_error_not_unhashable_set(tmp_path):
    registry = {"block": blk.dropout_rate}

    def create_model():
        return registry["block"]()  # a data structure: not followed

    # The dict is a closure variable, so dropout_rate is not reachable by name: it stays uncompiled.
    compiled = compile_model(create_model)
    assert compiled.sites == []
    from hyperbrace import minimize

    with pytest.raises(TemplateError) as info:
        minimize(create_model, max_evals=3, directory=tmp_path, show_progress=False)
    message = str(info.value)
    assert f'File "{blk.__file__}", line {blk.dropout_rate.__code__.co_firstlineno + 1}' in message
    assert "dropout_rate()" in message and "by name" in message and "unhashable" not in message


def test_template_in_an_installed_package_is_refused_before_any_trial(tmp_path, monkeypatch):
    package = tmp_path / "site-packages" / "hb_installed_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("def library_helper():\n    return {{choice([1, 2])}}\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site-packages"))
    import hb_installed_pkg

    def create_model():
        return hb_installed_pkg.library_helper()

    with pytest.raises(TemplateError) as info:
        compile_model(create_model)
    assert info.value.filename == str(package / "__init__.py") and info.value.lineno == 2
    assert "installed package" in str(info.value) and "pip install -e" in str(info.value)


def test_helper_without_source_is_refused_before_any_trial():
    namespace: dict = {}
    exec(compile("def no_source():\n    return {{choice([1, 2])}}\n", "<generated>", "exec"), namespace)
    no_source = namespace["no_source"]

    def create_model():
        return no_source()

    with pytest.raises(TemplateError) as info:
        compile_model(create_model)
    assert "source cannot be read" in str(info.value) and "no_source()" in str(info.value)


def test_template_at_module_level_explains_itself_with_file_and_line(tmp_path):
    script = tmp_path / "script.py"
    script.write_text("from hyperbrace import choice\n\nUNITS = {{choice([32, 64])}}\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "TemplateError" in proc.stderr and f'File "{script}", line 3' in proc.stderr
    assert "module level" in proc.stderr and "Move it into the model function" in proc.stderr


# -- the compiled function behaves as the original -----------------------------------------------------------------


def negate(fn):  # no functools.wraps
    def wrapper(*args, **kwargs):
        return -fn(*args, **kwargs)

    return wrapper


def negate_with_wraps(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return -fn(*args, **kwargs)

    return wrapper


@negate
def negated_without_wraps(x):
    return x + {{choice([1, 2])}}


@negate_with_wraps
def negated_with_wraps(x):
    """Documented."""
    return x + {{choice([1, 2])}}


@pytest.mark.parametrize("model", [negated_without_wraps, negated_with_wraps])
def test_decorators_are_applied_as_written(model):
    value, context = run(model, 10)
    assert value == -(10 + context.values["choice"])  # the decorator's sign flip is kept
    assert names(model) == ["choice"]


def test_identity_attributes_are_the_originals():
    compiled = compile_model(negated_with_wraps)
    assert compiled.function is negated_with_wraps
    inner = negated_with_wraps.__wrapped__
    assert (inner.__name__, inner.__qualname__, inner.__module__, inner.__doc__) == (
        "negated_with_wraps", "negated_with_wraps", __name__, "Documented.",
    )


class Vault:
    def __init__(self):
        self.__secret = 40

    def open(self):
        return self.__secret + {{choice([1, 2])}}


def test_name_mangling_in_methods():
    value, context = run(Vault().open)
    assert value == 40 + context.values["choice"]


def countdown(n):
    countdown.calls = getattr(countdown, "calls", 0) + 1
    if n == 0:
        return {{choice([100, 200])}}
    return countdown(n - 1)


def test_recursion_and_attributes_on_the_model_function():
    countdown.calls = 0
    value, context = run(countdown, 3)
    assert value == context.values["choice"] and countdown.calls == 4


def test_future_annotations_of_the_source_file_are_kept():
    def create_model():
        def block(x: NotDefinedAnywhere) -> AlsoUndefined:  # noqa: F821  (strings under the __future__ import)
            return x

        return block({{choice([1, 2])}}), block.__annotations__

    (value, annotations), _ = run(create_model)
    assert annotations == {"x": "NotDefinedAnywhere", "return": "AlsoUndefined"}


def test_closures_defaults_and_locals_without_internal_names():
    offset = 1000

    def create_model(a, b=2, *, c=3):
        x = {{choice([1, 2])}}
        return a + b + c + x + offset, sorted(locals())

    (value, local_names), context = run(create_model, 1)
    assert value == 1006 + context.values["x"]
    assert local_names == ["a", "b", "c", "offset", "x"]


def test_a_compiled_model_with_helpers_pickles_for_workers():
    compiled = compile_model(model_with_helpers_from_another_module)
    again = cloudpickle.loads(cloudpickle.dumps(compiled))
    study = optuna.create_study()
    context = TrialContext(study.ask())
    with active(context):
        value = again()
    assert set(context.values) == {"units_1", "units_2", "uniform"} and value > 0


def test_model_defined_in_a_script_with_a_helper_runs_in_worker_processes(tmp_path):
    """__main__ functions are pickled by value: the helpers of the copy in each worker must be compiled too."""
    script = tmp_path / "search.py"
    script.write_text(textwrap.dedent(f"""
        from hyperbrace import minimize

        def block(i):
            return {{{{choice([1, 2], name=f"w_{{i}}")}}}}

        def create_model():
            return block(0) + block(1) + {{{{uniform(0, 1)}}}}

        if __name__ == "__main__":
            result = minimize(create_model, max_evals=4, n_jobs=2, directory={str(tmp_path)!r}, show_progress=False)
            print(sorted(result.best_run), len(result.trials))
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "['uniform', 'w_0', 'w_1'] 4"


@pytest.mark.slow
@pytest.mark.timeout(600)  # about 30 s on a quiet machine: Keras and PyTorch are imported by three processes
def test_keras_model_built_through_a_helper_with_templates_runs_with_two_workers(tmp_path):
    """End to end: Keras (PyTorch backend) in worker processes, the templates in build_block(), called twice."""
    pytest.importorskip("keras")
    helpers = Path(__file__).parent / "helpers"
    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": str(Path(__file__).parent.parent)}
    done = subprocess.run([sys.executable, str(helpers / "keras_blocks.py"), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stdout + done.stderr
    [line] = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    report = json.loads(line.removeprefix("REPORT "))
    assert report["states"] == ["COMPLETE"] * 4
    assert report["space"] == ['f"units_{i}"', "Dropout"]
    best_run = report["best_run"]
    assert set(best_run) == {"units_0", "units_1", "Dropout"} and 0 <= best_run["Dropout"] <= 0.5
    assert report["units"] == [best_run["units_0"], best_run["units_1"]]  # the saved best model has those widths


def test_distribution_imported_in_the_enclosing_function_is_a_closure_variable():
    """``choice`` is a free variable of the model (imported inside the function that defines it); rewritten, the
    template no longer names it, yet the closure keeps its cell."""
    from hyperbrace import choice, uniform  # noqa: F401  (the templates' names, local here)

    def create_model():
        return {{choice([1, 2])}} + {{uniform(0, 1)}}

    assert create_model.__code__.co_freevars == ("choice", "uniform")
    value, context = run(create_model)
    assert value == context.values["choice"] + context.values["uniform"]
