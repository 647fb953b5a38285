"""What `running_fit` reads from the `fit` on the call stack."""

import keras
import pytest

from keras_trainopt._internal import running_fit
from tests.callbacks.helpers import tiny_data
from tests.callbacks.helpers import tiny_model


class Reader(keras.callbacks.Callback):
    """Keeps what `running_fit.find` reads at train begin."""

    def on_train_begin(self, logs=None):
        self.found = running_fit.find(self.model)


@pytest.mark.parametrize("kwargs, validates, freq", [
    ({}, False, 1),
    ({"validation_split": 0.25}, True, 1),
    ({"validation_data": tiny_data(8, seed=1)}, True, 1),
    ({"validation_split": 0.25, "validation_freq": 3}, True, 3),
    ({"validation_split": 0.25, "validation_freq": [2, 4]}, True, [2, 4]),
])
def test_find_reads_whether_fit_validates(kwargs, validates, freq):
    model = tiny_model()
    x, y = tiny_data(32)
    reader = Reader()
    model.fit(x, y, epochs=1, verbose=0, callbacks=[reader], **kwargs)
    assert reader.found is not None
    assert reader.found.validates is validates
    assert reader.found.validation_freq == freq


def test_find_outside_fit_is_none():
    assert running_fit.find(tiny_model()) is None


@pytest.mark.parametrize("freq", [1, 2, 3, 7, [1], [2, 3], [5, 9], []])
def test_validated_epochs_are_the_ones_keras_validates(freq):
    model = tiny_model()
    epochs = 8
    running = running_fit.RunningFit(
        code=None, epoch_iterator=None, callback_list=None, shuffle=True,
        initial_epoch=0, validates=True, validation_freq=freq)
    # the reference: Keras' own rule (a private method of the trainer)
    expected = [e for e in range(epochs) if model._should_eval(e, freq)]
    assert running_fit.validated_epochs(running, epochs) == expected


def test_no_epoch_is_validated_without_validation_data():
    running = running_fit.RunningFit(
        code=None, epoch_iterator=None, callback_list=None, shuffle=True,
        initial_epoch=0, validates=False, validation_freq=1)
    assert running_fit.validated_epochs(running, 5) == []


def test_the_validated_epochs_of_a_fit_match_its_history():
    model = tiny_model()
    x, y = tiny_data(32)
    reader = Reader()
    history = model.fit(x, y, epochs=6, verbose=0, validation_split=0.25,
                        validation_freq=[2, 3, 6], callbacks=[reader])
    validated = running_fit.validated_epochs(reader.found, 6)
    assert len(validated) == len(history.history["val_loss"]) == 3
    assert validated == [1, 2, 5]
