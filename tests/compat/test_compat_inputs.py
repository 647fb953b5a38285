"""Compatibility matrix, axis 2: input kinds x callbacks (functional model).

The functional model of the zoo is trained on each input kind: NumPy arrays,
a finite `tf.data.Dataset`, a repeating one with `steps_per_epoch`, one of
unknown length (`filter`), a `keras.utils.PyDataset` and a Python generator
with `steps_per_epoch`. NumPy arrays get every public callback alone; the
other kinds get the callbacks that depend on how batches and epochs arrive
(step counts, epoch ends, cycles spread over the run, the loss of each
batch, a resumed run's batch order), and every kind gets the combined set.
`batchnorm_data` (SWA/EMA's BatchNorm recomputation) is checked on each
kind of data it accepts, on a model with BatchNorm.

Ids read as the matrix: `test_alone[tf_data_repeat-SnapshotEnsemble]`.
"""

import keras
import numpy as np
import pytest

from keras_trainopt import StochasticWeightAveraging
from tests.compat import models
from tests.compat import references as ref

BATCH = models.BATCH


def _dataset(case):
    tf = pytest.importorskip("tensorflow")  # the tf.data input kinds

    return tf.data.Dataset.from_tensor_slices((case.x, case.y)).batch(BATCH)


def numpy_arrays(case):
    return ref.numpy_inputs(case)


def tf_data(case):
    return {"x": _dataset(case)}


def tf_data_repeat(case):
    return {"x": _dataset(case).repeat(), "steps_per_epoch": models.STEPS_PER_EPOCH}


def tf_data_unknown(case):
    """A finite pipeline whose length TensorFlow cannot know (`filter`)."""
    return {"x": _dataset(case).filter(lambda x, y: True)}


class ArrayDataset(keras.utils.PyDataset):
    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x) // BATCH

    def __getitem__(self, index):
        part = slice(index * BATCH, (index + 1) * BATCH)
        return self.x[part], self.y[part]


def py_dataset(case):
    # fit shuffles a PyDataset's batches unless told not to
    return {"x": ArrayDataset(case.x, case.y), "shuffle": False}


def _batches_forever(x, y):
    while True:
        for start in range(0, len(x), BATCH):
            yield x[start:start + BATCH], y[start:start + BATCH]


def generator(case):
    return {"x": _batches_forever(case.x, case.y),
            "steps_per_epoch": models.STEPS_PER_EPOCH}


INPUTS = {
    "numpy": numpy_arrays,
    "tf_data": tf_data,
    "tf_data_repeat": tf_data_repeat,
    "tf_data_unknown": tf_data_unknown,
    "py_dataset": py_dataset,
    "generator": generator,
}
# Epoch ends and the number of steps come from the input (SWA averages in
# the step that ends an epoch, SnapshotEnsemble spreads its cycles over the
# steps of the fit); the in-step hooks (decay per step, EMA) and the loss
# readings are checked on the repeating pipeline, the one that differs most
# from arrays.
ALONE = {
    "numpy": list(ref.CALLBACKS),
    "tf_data": ["StochasticWeightAveraging", "SnapshotEnsemble",
                "BackupAndRestore"],
    "tf_data_repeat": ["StochasticWeightAveraging", "SnapshotEnsemble",
                       "LossMonitor", "ExponentialDecay",
                       "ExponentialMovingAverage", "CheckpointEnsemble",
                       "BackupAndRestore"],
    "tf_data_unknown": ["StochasticWeightAveraging", "SnapshotEnsemble",
                        "LossMonitor"],
    "py_dataset": ["StochasticWeightAveraging", "SnapshotEnsemble",
                   "BackupAndRestore"],
    "generator": ["StochasticWeightAveraging", "SnapshotEnsemble",
                  "LossMonitor"],
}
# refused at train begin, by design: (error, what the message names); both
# need the number of steps per epoch, unknown for a pipeline after `filter`
REFUSED = {
    ("tf_data_unknown", "SnapshotEnsemble"): (ValueError, "steps_per_epoch"),
    ("tf_data_unknown", "StochasticWeightAveraging"): (ValueError, "steps_per_epoch"),
    ("tf_data_unknown", "combined"): (ValueError, "steps_per_epoch"),
}
XFAIL = {}


# the cells of `test_alone` in the default test run: every callback on
# NumPy arrays, and every other input kind once; `.ci/run` runs the rest
# (`slow`)
FAST = {
    ("tf_data", "SnapshotEnsemble"),
    ("tf_data_repeat", "ExponentialDecay"),
    ("tf_data_unknown", "SnapshotEnsemble"),
    ("py_dataset", "StochasticWeightAveraging"),
    ("generator", "LossMonitor"),
}


def _params(pairs, xfail, fast=None):
    out = []
    for inputs, callback in pairs:
        marks = []
        if fast is not None and inputs != "numpy" and (inputs, callback) not in fast:
            marks.append(pytest.mark.slow)
        if (inputs, callback) in xfail:
            marks.append(pytest.mark.xfail(
                strict=True, reason=xfail[(inputs, callback)]))
        out.append(pytest.param(inputs, callback, marks=marks,
                                id=f"{inputs}-{callback}"))
    return out


@pytest.mark.parametrize(
    "inputs, callback",
    _params([(i, c) for i, cs in ALONE.items() for c in cs], XFAIL, FAST),
)
def test_alone(inputs, callback, tmp_path):
    if (inputs, callback) in REFUSED:
        error, match = REFUSED[(inputs, callback)]
        case = models.functional()
        ref.expect_refusal(case, [ref.make(callback, case, tmp_path)], error,
                           match, inputs=INPUTS[inputs])
        return
    ref.run_alone(callback, models.functional, tmp_path, INPUTS[inputs])


@pytest.mark.slow  # every callback in one fit, per input kind: 3-15 s a cell
@pytest.mark.parametrize(
    "inputs, callback", _params([(i, "combined") for i in INPUTS], XFAIL)
)
def test_combined(inputs, callback, tmp_path):
    if (inputs, callback) in REFUSED:
        error, match = REFUSED[(inputs, callback)]
        case = models.functional()
        ref.expect_refusal(case, ref.combined_set(case, tmp_path), error, match,
                           inputs=INPUTS[inputs], validation=True)
        return
    ref.run_combined(models.functional, tmp_path, INPUTS[inputs])


# -- batchnorm_data on each kind of data -----------------------------------------


def functional_bn():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, name="dense")(inputs)
    hidden = keras.layers.BatchNormalization(name="bn")(hidden)
    hidden = keras.layers.ReLU(name="relu")(hidden)
    outputs = keras.layers.Dense(models.CLASSES, activation="softmax",
                                 name="out")(hidden)
    x, y, x_val, y_val = models.vector_data()
    model = models._compile(keras.Model(inputs, outputs))
    return models.Case("functional_bn", model, x, y, x_val, y_val)


BN_DATA = {
    "numpy": lambda case: case.x,
    "tf_data": lambda case: _dataset(case),
    "tf_data_repeat": lambda case: _dataset(case).repeat(),
    "py_dataset": lambda case: ArrayDataset(case.x, case.y),
}
@pytest.mark.parametrize("data", list(BN_DATA))
def test_batchnorm_data(data, tmp_path):
    """SWA with `batchnorm_data`: at train end the BatchNorm statistics are
    the mean and (biased) variance of the BN layer's inputs over the data,
    under the averaged weights (NumPy: x @ W + b with the model's final
    Dense weights)."""
    case = functional_bn()
    steps = None
    if data == "tf_data_repeat":
        # an infinite dataset is refused without a bound, naming the way out
        with pytest.raises(ValueError, match="batchnorm_steps"):
            StochasticWeightAveraging(start_epoch=0,
                                      batchnorm_data=BN_DATA[data](case))
        steps = len(case.x) // BATCH  # one pass over the data
    swa = StochasticWeightAveraging(start_epoch=0,
                                    batchnorm_data=BN_DATA[data](case),
                                    batchnorm_steps=steps)
    inputs = tf_data_repeat if data == "tf_data_repeat" else None
    with ref.time_limit(20):
        ref.fit(case, [swa], inputs)
    assert swa.num_averaged == ref.EPOCHS
    dense, bn = case.model.get_layer("dense"), case.model.get_layer("bn")
    kernel, bias = (keras.ops.convert_to_numpy(w).astype("float64")
                    for w in dense.weights)
    h = case.x.astype("float64") @ kernel + bias
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean),
                               h.mean(axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_variance),
                               h.var(axis=0), rtol=1e-4, atol=1e-5)
