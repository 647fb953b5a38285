"""Data that yields its own batches: which is which, and how it is read."""

import keras
import numpy as np
import pytest

from keras_trainopt import recompute_batchnorm_statistics
from keras_trainopt._internal import batches


class Counted(keras.utils.PyDataset):
    """Batches 0, 1, ... (`count` of them, or without end), counting the
    epoch ends."""

    def __init__(self, count=None):
        super().__init__()
        self.count, self.epoch_ends = count, 0

    @property
    def num_batches(self):
        return self.count

    def __getitem__(self, index):
        return np.full((2, 1), index, "float32")

    def on_epoch_end(self):
        self.epoch_ends += 1


def first(iterator, n):
    return [int(batch[0, 0]) for batch, _ in zip(iterator, range(n),
                                                 strict=False)]


def test_which_data_yields_batches():
    array = np.zeros((4, 2))
    assert not batches.is_batches(array)
    assert not batches.is_batches([array, array])  # two inputs
    assert not batches.is_batches({"a": array})
    assert not batches.is_batches("file.npy")
    assert batches.is_batches(Counted(2))
    assert batches.is_batches(iter([array]))
    assert batches.is_batches((array, array))  # a tuple: batches, as in fit


def test_a_py_dataset_is_cycled_with_its_epoch_end_between_passes():
    data = Counted(3)
    assert first(batches.cycle(data), 7) == [0, 1, 2, 0, 1, 2, 0]
    assert data.epoch_ends == 2


def test_a_generator_is_read_once_and_empty_data_ends():
    generator = (np.full((2, 1), i, "float32") for i in range(3))
    assert first(batches.cycle(generator), 10) == [0, 1, 2]
    assert list(batches.cycle([])) == []


def test_endless_data_is_known():
    assert batches.is_endless(Counted(None))
    assert not batches.is_endless(Counted(3))
    assert first(batches.iterate(Counted(None)), 5) == [0, 1, 2, 3, 4]
    tf = pytest.importorskip("tensorflow")
    dataset = tf.data.Dataset.from_tensor_slices(np.zeros((4, 1)))
    assert not batches.is_endless(dataset)
    assert batches.is_endless(dataset.repeat())


def test_batchnorm_statistics_from_an_endless_py_dataset_need_steps():
    # before: `len()` of a PyDataset without a length, a TypeError
    model = keras.Sequential([keras.Input((1,)),
                              keras.layers.BatchNormalization()])
    with pytest.raises(ValueError, match=r"never ends .* PyDataset without "
                       r"a length.*Pass `steps`"):
        recompute_batchnorm_statistics(model, Counted(None))
    recompute_batchnorm_statistics(model, Counted(None), steps=4)
    layer = model.layers[0]
    # batches 0..3 of two rows each: mean 1.5, biased variance 1.25
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer.moving_mean), [1.5], rtol=1e-6)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer.moving_variance), [1.25], rtol=1e-6)
