"""The situations of Hyperas' own examples, written fresh and run through ``hyperbrace.hyperas`` on tiny data.

Each script is what a Hyperas user has, with the imports changed. Each test checks the parameter names in
``best_run`` (Hyperas' names), index-vs-value semantics (``eval_space``) and that the returned model predicts.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from keras.callbacks import EarlyStopping, ReduceLROnPlateau  # noqa: E402
from keras.layers import (  # noqa: E402
    LSTM,
    Activation,
    Conv1D,
    Dense,
    Dropout,
    Embedding,
    Input,
    MaxPooling1D,
    concatenate,
)
from keras.models import Model, Sequential  # noqa: E402

from hyperbrace.hyperas import STATUS_OK, Trials, optim, rand, tpe  # noqa: E402
from hyperbrace.hyperas.distributions import choice, loguniform, uniform  # noqa: E402,F401

pytestmark = pytest.mark.slow

QUIET = dict(verbose=False)


def digits_data():
    """300 training and 100 test images of scikit-learn's digits, one-hot labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    nb_classes = 10  # the models use it although data() does not return it (Hyperas inlined data()'s body)
    x = (digits.data / 16.0).astype("float32")
    y = keras.utils.to_categorical(digits.target, nb_classes)
    x_train, y_train = x[:300], y[:300]
    x_test, y_test = x[300:400], y[300:400]
    return x_train, y_train, x_test, y_test


def assert_predicts(model, x, classes=10):
    predictions = model.predict(x, verbose=0)
    samples = len(x[0]) if isinstance(x, list) else len(x)  # a list holds one array per input
    assert predictions.shape == (samples, classes) and np.isfinite(predictions).all()


# -- a simple MLP --------------------------------------------------------------------------------------------------


def simple_mlp(x_train, y_train, x_test, y_test):
    model = Sequential()
    model.add(Input(shape=(64,)))
    model.add(Dense({{choice([16, 32])}}))
    model.add(Activation({{choice(['relu', 'sigmoid'])}}))
    model.add(Dropout({{uniform(0, 0.5)}}))
    model.add(Dense(nb_classes))  # noqa: F821 (a local of digits_data())
    model.add(Activation('softmax'))
    model.compile(loss='categorical_crossentropy', optimizer={{choice(['rmsprop', 'adam'])}}, metrics=['accuracy'])
    model.fit(x_train, y_train, batch_size={{choice([32, 64])}}, epochs=1, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    return {'loss': -accuracy, 'status': STATUS_OK, 'model': model}


def test_simple_mlp():
    trials = Trials()
    best_run, best_model = optim.minimize(simple_mlp, digits_data, tpe.suggest, 3, trials, **QUIET)
    assert list(best_run) == ['Dense', 'Activation', 'Dropout', 'optimizer', 'batch_size']
    assert best_run['Dense'] in (0, 1) and best_run['optimizer'] in (0, 1)  # indices
    assert 0 <= best_run['Dropout'] <= 0.5
    assert_predicts(best_model, digits_data()[2])
    assert -best_model.evaluate(*digits_data()[2:], verbose=0)[1] == pytest.approx(min(trials.losses()))


# -- the full-feature one: activation/optimizer choice, `if {{choice}}`, a choice of layer objects ------------------


def full_featured(x_train, y_train, x_test, y_test):
    model = Sequential()
    model.add(Input(shape=(64,)))
    model.add(Dense({{choice([16, 32])}}))
    model.add(Activation({{choice(['relu', 'tanh'])}}))
    model.add(Dropout({{uniform(0, 0.5)}}))
    # Hyperas' example: an optional third layer
    if {{choice(['three', 'four'])}} == 'four':
        model.add(Dense(16))
        model.add({{choice([Dropout(0.5), Activation('linear')])}})
        model.add(Activation('relu'))
    model.add(Dense(nb_classes, activation='softmax'))  # noqa: F821
    learning_rate = {{loguniform(-7, -3)}}
    optimizers = {'adam': keras.optimizers.Adam, 'sgd': keras.optimizers.SGD}
    model.compile(loss='categorical_crossentropy', metrics=['accuracy'],
                  optimizer=optimizers[{{choice(['adam', 'sgd'])}}](learning_rate=learning_rate))
    model.fit(x_train, y_train, batch_size=64, epochs=1, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    return {'loss': -accuracy, 'status': STATUS_OK, 'model': model}


def test_full_featured_with_layer_objects_fresh_each_trial():
    trials = Trials()
    models = optim.best_models(3, full_featured, digits_data, rand.suggest, 3, trials, rseed=2, **QUIET)
    names = {name for t in trials for name, values in t['misc']['vals'].items() if values}
    # `if {{...}}` follows Dropout(...): Dropout_1; `optimizers[{{...}}]` follows `learning_rate = {{...}}`
    assert {'Dense', 'Activation', 'Dropout', 'Dropout_1', 'learning_rate', 'learning_rate_1'} <= names
    four = [t for t in trials if t['misc']['vals']['Dropout_1'] == [1]]
    assert all(t['misc']['vals']['add'] in ([0], [1]) for t in four)  # the layer object's index
    assert all(np.exp(-7) <= t['misc']['vals']['learning_rate'][0] <= np.exp(-3) for t in trials)
    # a layer object chosen by several trials is built afresh for each (Hyperas reused one instance)
    layers = [id(layer) for m in models for layer in m.layers]
    assert len(layers) == len(set(layers))
    best_run, _ = optim.minimize(full_featured, digits_data, rand.suggest, 2, Trials(), eval_space=True, **QUIET)
    assert best_run['Dropout_1'] in ('three', 'four') and best_run['learning_rate_1'] in ('adam', 'sgd')
    if best_run['Dropout_1'] == 'four':
        assert best_run['add'] in ('Dropout(0.5)', "Activation('linear')")  # an object option's source text
    for model in models:
        assert_predicts(model, digits_data()[2])


# -- a generator / ImageDataGenerator-style data() ------------------------------------------------------------------


class AugmentedImages(keras.utils.PyDataset):
    """Batches of images with random noise added, as ImageDataGenerator's flow() gave (Keras 3 has none)."""

    def __init__(self, x, y, batch_size, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size = x, y, batch_size
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        return int(np.ceil(len(self.x) / self.batch_size))

    def __getitem__(self, index):
        batch = slice(index * self.batch_size, (index + 1) * self.batch_size)
        noise = self.rng.normal(0, 0.05, self.x[batch].shape).astype("float32")
        return self.x[batch] + noise, self.y[batch]


def image_generator_data():
    x_train, y_train, x_test, y_test = digits_data()
    x_train, x_test = x_train.reshape(-1, 8, 8, 1), x_test.reshape(-1, 8, 8, 1)
    train_images = AugmentedImages(x_train, y_train, batch_size=32)
    return train_images, x_test, y_test


def cnn_on_generator(train_images, x_test, y_test):
    model = Sequential([
        Input(shape=(8, 8, 1)),
        keras.layers.Conv2D({{choice([4, 8])}}, (3, 3), activation='relu'),
        keras.layers.Flatten(),
        Dropout({{uniform(0, 0.5)}}),
        Dense(10, activation='softmax'),
    ])
    model.compile(loss='categorical_crossentropy', optimizer='adam', metrics=['accuracy'])
    model.fit(train_images, epochs=1, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    return {'loss': -accuracy, 'status': STATUS_OK, 'model': model}


def test_generator_data():
    best_run, best_model = optim.minimize(cnn_on_generator, image_generator_data, tpe.suggest, 2, Trials(), **QUIET)
    assert list(best_run) == ['Conv2D', 'Dropout'] and best_run['Conv2D'] in (0, 1)
    assert_predicts(best_model, image_generator_data()[1])


# -- a Conv1D / LSTM text model with positional templates, rand.suggest ---------------------------------------------


def text_data():
    """Token sequences; the label says whether token 7 occurs."""
    rng = np.random.default_rng(0)
    max_features, maxlen = 20, 12  # the model uses both; data() returns neither
    x = rng.integers(1, max_features, size=(240, maxlen))
    y = (x == 7).any(axis=1).astype("float32")
    return x[:200], y[:200], x[200:], y[200:]


def conv_lstm(x_train, y_train, x_test, y_test):
    model = Sequential()
    model.add(Input(shape=(maxlen,)))  # noqa: F821
    model.add(Embedding(max_features, 8))  # noqa: F821
    model.add(Dropout({{uniform(0, 0.3)}}))
    model.add(Conv1D({{choice([4, 8])}}, {{choice([3, 5])}}, padding='valid', activation='relu'))
    model.add(MaxPooling1D(pool_size=2))
    model.add(LSTM({{choice([4, 8])}}))
    model.add(Dense(1, activation='sigmoid'))
    model.compile(loss='binary_crossentropy', optimizer='adam', metrics=['accuracy'])
    model.fit(x_train, y_train, batch_size={{choice([32, 64])}}, epochs=1, verbose=0)
    loss, _ = model.evaluate(x_test, y_test, verbose=0)
    return {'loss': loss, 'status': STATUS_OK, 'model': model}


def test_conv1d_lstm_text_with_positional_templates():
    best_run, best_model = optim.minimize(conv_lstm, text_data, rand.suggest, 2, Trials(), eval_space=True, **QUIET)
    # Conv1D's second positional template has no word: it takes the previous name, suffixed. LSTM's template has
    # the same text as Conv1D's first, so it shares that one's word (Hyperas' rule, quirk included).
    assert list(best_run) == ['Dropout', 'Conv1D', 'Conv1D_1', 'Conv1D_2', 'batch_size']
    assert best_run['Conv1D'] in (4, 8) and best_run['Conv1D_1'] in (3, 5)  # eval_space: values
    predictions = best_model.predict(text_data()[2], verbose=0)
    assert predictions.shape == (40, 1) and ((predictions >= 0) & (predictions <= 1)).all()


# -- callbacks inside the model --------------------------------------------------------------------------------------


def with_callbacks(x_train, y_train, x_test, y_test):
    model = Sequential([Input(shape=(64,)), Dense(16, activation='relu'), Dense(nb_classes, activation='softmax')])  # noqa: F821
    model.compile(loss='categorical_crossentropy', optimizer='adam', metrics=['accuracy'])
    callbacks = [
        EarlyStopping(monitor='val_loss', patience={{choice([1, 2])}}),
        ReduceLROnPlateau(monitor='val_loss', factor={{uniform(0.1, 0.5)}}, patience=1),
    ]
    history = model.fit(x_train, y_train, validation_split=0.2, epochs=3, batch_size=64, verbose=0,
                        callbacks=callbacks)
    return {'loss': min(history.history['val_loss']), 'status': STATUS_OK, 'model': model}


def test_callbacks_inside_the_model():
    best_run, best_model = optim.minimize(with_callbacks, digits_data, tpe.suggest, 2, Trials(), **QUIET)
    assert list(best_run) == ['patience', 'factor'] and best_run['patience'] in (0, 1)
    assert 0.1 <= best_run['factor'] <= 0.5
    assert_predicts(best_model, digits_data()[2])


# -- helper functions that receive template values -----------------------------------------------------------------


def dense_block(units, rate):
    """A helper in the user's module: Hyperas needed it listed in functions=; hyperbrace does not."""
    return [Dense(units, activation='relu'), Dropout(rate)]


def with_helper(x_train, y_train, x_test, y_test):
    model = Sequential([Input(shape=(64,))])
    for layer in dense_block({{choice([8, 16])}}, {{uniform(0, 0.5)}}):
        model.add(layer)
    model.add(Dense(nb_classes, activation='softmax'))  # noqa: F821
    model.compile(loss='categorical_crossentropy', optimizer='adam', metrics=['accuracy'])
    model.fit(x_train, y_train, epochs=1, batch_size=64, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    return {'loss': -accuracy, 'status': STATUS_OK, 'model': model}


def test_helper_functions_receive_template_values():
    best_run, best_model = optim.minimize(with_helper, digits_data, tpe.suggest, 2, Trials(), **QUIET)
    assert list(best_run) == ['dense_block', 'dense_block_1'] and best_run['dense_block'] in (0, 1)
    assert 0 <= best_run['dense_block_1'] <= 0.5
    assert_predicts(best_model, digits_data()[2])


# -- a functional-API model with two inputs ------------------------------------------------------------------------


def two_input_data():
    x_train, y_train, x_test, y_test = digits_data()
    # the top and the bottom half of each image as two inputs
    return [x_train[:, :32], x_train[:, 32:]], y_train, [x_test[:, :32], x_test[:, 32:]], y_test


def two_inputs(x_train, y_train, x_test, y_test):
    top, bottom = Input(shape=(32,)), Input(shape=(32,))
    top_features = Dense({{choice([8, 16])}}, activation='relu')(top)
    bottom_features = Dense({{choice([8, 16])}}, activation='relu')(bottom)
    merged = concatenate([top_features, bottom_features])
    output = Dense(10, activation='softmax')(Dropout({{uniform(0, 0.5)}})(merged))
    model = Model(inputs=[top, bottom], outputs=output)
    model.compile(loss='categorical_crossentropy', optimizer='adam', metrics=['accuracy'])
    model.fit(x_train, y_train, epochs=1, batch_size=64, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    return {'loss': -accuracy, 'status': STATUS_OK, 'model': model}


def test_functional_api_with_two_inputs():
    best_run, best_model = optim.minimize(two_inputs, two_input_data, tpe.suggest, 2, Trials(), eval_space=True,
                                          **QUIET)
    # two templates with the same text: the second shares the first one's word (Hyperas' rule)
    assert list(best_run) == ['Dense', 'Dense_1', 'Dropout']
    assert best_run['Dense'] in (8, 16) and best_run['Dense_1'] in (8, 16)
    assert_predicts(best_model, two_input_data()[2])


# -- an ensemble -----------------------------------------------------------------------------------------------------


def test_ensemble_votes_with_the_best_models():
    trials = Trials()
    ensemble = optim.best_ensemble(2, simple_mlp, digits_data, rand.suggest, 3, trials, voting='soft', **QUIET)
    assert len(ensemble.models) == 2
    x_test, y_test = digits_data()[2:]
    labels = ensemble.predict(x_test)
    assert labels.shape == (100,) and set(labels.tolist()) <= set(range(10))
    hard = type(ensemble)(ensemble.models, voting='hard', nb_classes=10)
    assert hard.predict(x_test).shape == (100,)
    kept = sorted(trials.losses())[:2]
    assert sorted(r['loss'] for r in trials.results if 'model' in r) == kept  # the two lowest losses
