"""The template compiler: naming, conditional and nested sampling, fresh objects, and name resolution.

Model functions are defined at module level (and inside tests, for closures), as users write them; each is
compiled with :func:`compile_model` and run inside a real Optuna trial.
"""

from __future__ import annotations

import functools
import math
import pickle
import types

import cloudpickle
import optuna
import pytest

from hyperbrace._context import TrialContext, active
from hyperbrace.template import TemplateError, compile_model


def names(fn) -> list[str]:
    return [site.name for site in compile_model(fn).sites]


def run(fn, *args, params: dict | None = None, seed: int = 0, study: optuna.Study | None = None, **kwargs):
    """Run ``fn``'s rewritten form once inside a real trial; return (its value, the trial context).

    ``params`` fixes some engine values (Optuna's enqueue_trial); the rest are drawn by a seeded random sampler.
    """
    compiled = compile_model(fn)
    study = study or optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    if params:
        study.enqueue_trial(params)
    trial = study.ask()
    context = TrialContext(trial)
    with active(context):
        value = compiled(*args, **kwargs)
    study.tell(trial, 0.0)
    return value, context


class Model:
    """Stands in for a Keras model: records what is added."""

    def __init__(self):
        self.layers = []

    def add(self, layer):
        self.layers.append(layer)

    def compile(self, **kwargs):
        self.compiled = kwargs


class Layer:
    def __init__(self, value=None, **kwargs):
        self.value, self.kwargs = value, kwargs

    def __repr__(self):
        return f"{type(self).__name__}({self.value!r})"


class Dense(Layer):
    pass


class Dropout(Layer):
    pass


class Activation(Layer):
    pass


layers = types.SimpleNamespace(Dense=Dense, Dropout=Dropout)


# -- naming --------------------------------------------------------------------------------------------------------


def keyword_names():
    Dense(units={{choice([8, 16])}}, activation={{choice(["relu", "tanh"])}})


def called_names(model):
    model.add(Dropout({{uniform(0, 1)}}))
    model.add({{choice(["a", "b"])}})
    layers.Dense({{choice([8, 16])}})
    Dense({{choice([1, 2])}}, activation="relu")  # positional, next to a keyword: still the called name


def assigned_names(obj, d):
    lr = {{uniform(0, 1)}}
    obj.momentum = {{uniform(0, 1)}}
    d["decay"] = {{uniform(0, 1)}}
    d["not an identifier"] = {{uniform(0, 1)}}
    epochs: int = {{choice([1, 2])}}
    if (batch := {{choice([32, 64])}}) > 0:
        pass
    return lr, epochs, batch


class Trainer:
    def configure(self):
        self.learning_rate = {{loguniform(1e-4, 1e-1)}}
        self.config = {"epochs": {{choice([1, 2])}}}
        self.config["batch_size"] = {{choice([32, 64])}}


def test_self_attributes_and_their_keys_give_the_name():
    assert names(Trainer.configure) == ["learning_rate", "epochs", "batch_size"]
    trainer = Trainer()
    _, context = run(Trainer.configure, trainer)
    assert trainer.learning_rate == context.values["learning_rate"]
    assert trainer.config == {"epochs": context.values["epochs"], "batch_size": context.values["batch_size"]}


def dict_key_names():
    return {"optimizer": {{choice(["adam", "sgd"])}}, "nested": {"units": {{choice([1, 2])}}}}


def fallback_names():
    if {{choice(["x", "y"])}} == "x":
        return {{uniform(0, 1)}} + 1
    return 0


def repeated_names(model):
    model.add(Dropout({{uniform(0, 1)}}))
    model.add(Dense(8))
    model.add(Dropout({{uniform(0, 1)}}))
    model.add(Dropout({{uniform(0, 1)}}))


def keyword_beats_call_beats_assignment():
    x = Dense(units={{choice([1, 2])}})
    y = Dropout({{uniform(0, 1)}})
    z = {{uniform(0, 1)}}
    return x, y, z


def test_keyword_gives_the_name():
    assert names(keyword_names) == ["units", "activation"]


def test_called_name_gives_the_name():
    assert names(called_names) == ["Dropout", "add", "Dense", "Dense_1"]


def test_assigned_name_gives_the_name():
    # attribute -> its attribute name, string key -> the key, annotated, walrus; a key that is no identifier
    # falls back to the distribution's name.
    assert names(assigned_names) == ["lr", "momentum", "decay", "uniform", "epochs", "batch"]


def test_dict_key_gives_the_name():
    assert names(dict_key_names) == ["optimizer", "units"]


def test_fallback_is_the_distribution_name():
    assert names(fallback_names) == ["choice", "uniform"]


def test_repeats_are_numbered_in_source_order():
    assert names(repeated_names) == ["Dropout", "Dropout_1", "Dropout_2"]


def test_nearest_context_wins():
    assert names(keyword_beats_call_beats_assignment) == ["units", "Dropout", "z"]


def two_identical_templates():
    a = {{choice([1, 2])}}
    b = {{choice([1, 2])}}
    return a, b


def test_identical_template_text_at_two_places_is_two_parameters():
    assert names(two_identical_templates) == ["a", "b"]
    seen = set()
    for seed in range(20):
        (a, b), context = run(two_identical_templates, seed=seed)
        assert set(context.values) == {"a", "b"}
        seen.add((a, b))
    assert len(seen) == 4  # drawn independently: every combination occurs


def explicit_names(model):
    lr = {{uniform(0, 1, name="learning_rate")}}
    width = {{choice([4, 8])}}
    model.add(Dense({{choice([4, 8], name="width")}}))
    return lr, width


def test_explicit_name_wins_and_reserves_its_name():
    # The explicit "width" keeps its name; the assigned `width` before it steps aside to width_1.
    assert names(explicit_names) == ["learning_rate", "width_1", "width"]
    _, context = run(explicit_names, Model())
    assert set(context.values) == {"learning_rate", "width_1", "width"}
    assert set(context.trial.params) == {"learning_rate", "width_1", "width"}


def per_layer_names(model, depth):
    for i in range(depth):
        model.add(Dense({{choice([4, 8, 16], name=f"units_{i}")}}))
        model.add(Dropout({{uniform(0, 0.5)}}))  # no name=: one parameter shared by every layer
    return model


def test_fstring_name_in_a_loop_gives_one_parameter_per_layer():
    assert names(per_layer_names)[1] == "Dropout"
    model, context = run(per_layer_names, Model(), 3)
    assert set(context.values) == {"units_0", "units_1", "units_2", "Dropout"}
    units = [layer.value for layer in model.layers if isinstance(layer, Dense)]
    assert units == [context.values[f"units_{i}"] for i in range(3)]


def test_template_in_a_loop_without_name_is_one_parameter():
    model, context = run(per_layer_names, Model(), 4)
    rates = {layer.value for layer in model.layers if isinstance(layer, Dropout)}
    assert len(rates) == 1 and rates == {context.values["Dropout"]}


def same_name_twice():
    encoder = {{choice([16, 32, 64], name="width")}}
    decoder = {{choice([16, 32, 64], name="width")}}
    return encoder, decoder


def test_same_name_twice_in_one_trial_is_one_value():
    for seed in range(10):
        (encoder, decoder), context = run(same_name_twice, seed=seed)
        assert encoder == decoder == context.values["width"]
        assert list(context.trial.params) == ["width"]


# -- conditional and nested ----------------------------------------------------------------------------------------


def conditional():
    if {{choice(["small", "large"], name="size")}} == "small":
        units = {{choice([4, 8])}}
    else:
        units = {{choice([64, 128], name="big_units")}}
        depth = {{uniformint(2, 4)}}
        return units * depth
    return units


def test_only_the_branch_that_runs_is_sampled():
    seen = set()
    for seed in range(12):
        value, context = run(conditional, seed=seed)
        params = set(context.trial.params)
        if context.values["size"] == "small":
            assert params == {"size", "units"} and value in (4, 8)
        else:
            assert params == {"size", "big_units", "depth"} and value in range(128, 513)
        seen.add(context.values["size"])
    assert seen == {"small", "large"}


def nested(model):
    model.add({{choice([Dropout({{uniform(0, 0.5)}}), Activation("linear")])}})
    return model.layers[-1]


def test_template_inside_an_option_is_sampled_only_when_that_option_is_chosen():
    assert names(nested) == ["add", "Dropout"]
    layer, context = run(nested, Model(), params={"add": 0})
    assert isinstance(layer, Dropout) and 0 <= layer.value <= 0.5
    assert set(context.trial.params) == {"add", "Dropout"}
    assert context.values["add"] == "Dropout({{uniform(0, 0.5)}})"  # an object option is recorded by its text
    layer, context = run(nested, Model(), params={"add": 1})
    assert isinstance(layer, Activation) and layer.value == "linear"
    assert set(context.trial.params) == {"add"}
    assert context.values["add"] == 'Activation("linear")'


def nested_in_arguments():
    return {{choice([{{uniformint(1, 3)}}, 10])}}


def test_template_nested_in_a_choice_of_numbers():
    value, context = run(nested_in_arguments, params={"choice": 0})
    assert value in (1, 2, 3) and set(context.trial.params) == {"choice", "uniformint"}
    value, context = run(nested_in_arguments, params={"choice": 1})
    assert value == 10 and set(context.trial.params) == {"choice"}


def layer_choice(model):
    model.add({{choice([Dense(8), Dropout(0.5)])}})
    return model.layers[-1]


def test_choice_of_layer_objects_gives_fresh_objects_each_trial():
    study = optuna.create_study()
    first, _ = run(layer_choice, Model(), params={"add": 0}, study=study)
    second, context = run(layer_choice, Model(), params={"add": 0}, study=study)
    assert isinstance(first, Dense) and isinstance(second, Dense)
    assert first is not second  # a layer built in one trial is never reused in the next
    assert context.trial.params == {"add": 0}  # objects are stored by index...
    assert context.values == {"add": "Dense(8)"}  # ...and reported by their source text


def weighted_layers(model):
    model.add({{pchoice([(0.9, Dense({{choice([4, 8])}})), (0.1, Activation("linear"))])}})
    return model.layers[-1]


def test_pchoice_of_objects_builds_only_the_chosen_option():
    assert names(weighted_layers) == ["add", "Dense"]
    layer, context = run(weighted_layers, Model(), params={"add": 0.5})
    assert isinstance(layer, Dense) and layer.value == context.values["Dense"]
    assert context.values["add"] == 'Dense({{choice([4, 8])}})'
    layer, context = run(weighted_layers, Model(), params={"add": 0.95})
    assert isinstance(layer, Activation) and set(context.trial.params) == {"add"}


def comprehension(model):
    model.layers = [Dense({{choice([4, 8])}}) for _ in range(3)]
    return [layer.value for layer in model.layers]


def test_template_in_a_comprehension_is_one_parameter():
    values, context = run(comprehension, Model())
    assert values == [context.values["Dense"]] * 3


def tuple_and_dict_choice():
    kernel = {{choice([(3, 3), (5, 5)])}}
    optimizer = {{choice([{"name": "adam", "lr": 1e-3}, {"name": "sgd", "lr": 1e-2}])}}
    return kernel, optimizer


def test_choice_of_tuples_and_dicts():
    (kernel, optimizer), context = run(tuple_and_dict_choice, params={"kernel": 1, "optimizer": 0})
    assert kernel == (5, 5) and optimizer == {"name": "adam", "lr": 1e-3}
    assert context.values == {"kernel": "(5, 5)", "optimizer": '{"name": "adam", "lr": 1e-3}'}


def primitive_choice():
    return {{choice([256, 512, 1024])}}, {{choice(["adam", "sgd"])}}


def test_primitive_options_are_stored_as_themselves():
    _, context = run(primitive_choice, params={"choice": 512, "choice_1": "sgd"})
    assert context.trial.params == {"choice": 512, "choice_1": "sgd"}
    assert context.values == {"choice": 512, "choice_1": "sgd"}


# -- what the rewritten function can see ---------------------------------------------------------------------------

SCALE = 3.0  # a module global


def _helper(x):
    return x * SCALE


class Residual(Layer):
    """A custom layer defined in the user's module."""


def uses_globals_helpers_and_custom_layers(model):
    model.add(Residual({{uniform(0, 1)}}))
    return _helper({{choice([1, 2])}}) + math.floor(SCALE)


def test_globals_helpers_imports_and_custom_layers_resolve():
    model = Model()
    value, context = run(uses_globals_helpers_and_custom_layers, model)
    assert isinstance(model.layers[0], Residual)
    assert value == context.values["_helper"] * 3.0 + 3


def test_globals_are_read_at_call_time():
    global SCALE
    compiled = compile_model(uses_globals_helpers_and_custom_layers)
    study = optuna.create_study()
    study.enqueue_trial({"_helper": 2})
    context = TrialContext(study.ask())
    SCALE = 10.0
    try:
        with active(context):
            assert compiled(Model()) == 20.0 + 10
    finally:
        SCALE = 3.0


def test_closures_see_the_enclosing_variables():
    hidden = [4, 8]
    bias = 100

    def create_model():
        return {{choice(hidden)}} + bias

    value, context = run(create_model)
    assert value == context.values["choice"] + 100
    assert names(create_model) == ["choice"]


def test_nested_function_inside_the_model_keeps_working():
    def create_model():
        def block(units):
            return Dense(units)

        return block({{choice([4, 8], name="units")}}).value

    value, context = run(create_model)
    assert value == context.values["units"]


def test_function_defined_in_an_imported_module():
    from helpers import imported_model

    assert names(imported_model.create_model) == ["width", "_scaled"]
    result, context = run(imported_model.create_model, offset=1.0)
    assert result["width"] in (8, 16)
    assert math.isclose(result["loss"], abs(context.values["_scaled"] * 10 - 5) + 1.0)


class Builder:
    factor = 2

    def scale(self, x):
        return x * self.factor

    def build(self, base):
        return base + {{choice([1, 2], name="step")}} * self.factor

    @staticmethod
    def static_build():
        return {{uniformint(1, 3)}}


class SubBuilder(Builder):
    def scale(self, x):
        return -1  # never called: build() asks super() for Builder's scale

    def build(self, base):
        return super().scale(base) + {{choice([100, 200])}}




def test_methods_compile_from_their_class():
    value, context = run(Builder.build, Builder(), 10)
    assert value == 10 + context.values["step"] * 2
    value, _ = run(Builder.static_build)
    assert value in (1, 2, 3)
    value, context = run(SubBuilder.build, SubBuilder(), 5)  # super() needs the method's __class__ cell
    assert value == 5 * 2 + context.values["choice"]


def test_bound_method():
    builder = SubBuilder()
    builder.factor = 3
    value, context = run(builder.build, 5)
    assert value == 5 * 3 + context.values["choice"]
    assert names(builder.build) == ["choice"]
    again = pickle.loads(pickle.dumps(compile_model(builder.build)))
    study = optuna.create_study()
    study.enqueue_trial({"choice": 200})
    with active(TrialContext(study.ask())):
        assert again(1) == 3 + 200


def _logged(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


@_logged
def decorated(x):
    return x + {{choice([1, 2])}}


def test_decorated_function_is_compiled_from_the_wrapped_one():
    value, context = run(decorated, 1)
    assert value == 1 + context.values["choice"]


def with_defaults(a, b=2, *, c=3):
    return a + b + c + {{choice([0, 100])}}


def test_defaults_and_keyword_only_arguments_are_kept():
    value, context = run(with_defaults, 1)
    assert value == 6 + context.values["choice"]
    value, context = run(with_defaults, 1, b=0, c=0)
    assert value == 1 + context.values["choice"]


def with_comments_and_strings():
    # A comment holding {{choice([1, 2])}} is not a template, nor is a string:
    text = "{{uniform(0, 1)}}"
    return text, {{choice([  # a comment inside the template
        "a",
        "b",
    ])}}


def test_comments_strings_and_multiline_templates():
    assert names(with_comments_and_strings) == ["choice"]
    (text, value), _ = run(with_comments_and_strings)
    assert text == "{{uniform(0, 1)}}" and value in ("a", "b")


def test_sites_know_their_file_line_and_text():
    site = compile_model(keyword_names).sites[1]
    assert site.filename == __file__
    assert site.lineno == keyword_names.__code__.co_firstlineno + 1
    assert site.text == '{{choice(["relu", "tanh"])}}'
    assert site.distribution == "choice" and site.context == "activation"


def test_template_outside_a_search_says_how_to_run_it():
    with pytest.raises(TemplateError) as info:
        compile_model(keyword_names)()
    assert "only inside a search" in str(info.value) and "evaluate" in str(info.value)


def test_compiled_model_pickles_without_its_source():
    compiled = compile_model(per_layer_names)
    for dumps in (pickle.dumps, cloudpickle.dumps):
        again = pickle.loads(dumps(compiled))
        assert [s.name for s in again.sites] == [s.name for s in compiled.sites]
        study = optuna.create_study()
        context = TrialContext(study.ask())
        with active(context):
            model = again(Model(), 2)
        assert set(context.values) == {"units_0", "units_1", "Dropout"} and len(model.layers) == 4
