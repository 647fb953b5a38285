"""Data that yields its own batches, as `model.fit` takes it.

Besides arrays (`arrays`), `fit` takes data that comes in batches: a
`tf.data.Dataset`, a `keras.utils.PyDataset`, a PyTorch `DataLoader`, a
generator. The helpers that read user data (`find_learning_rate`,
`recompute_batchnorm_statistics`) go through its batches here: one pass
(`iterate`), or pass after pass for data that can be read again (`cycle`).
"""

import itertools

import keras

from keras_trainopt._internal import arrays


def is_batches(data):
    """Whether `data` yields batches: an iterable that is not arrays."""
    if isinstance(data, (str, bytes)) or arrays.is_arrays(data):
        return False
    return isinstance(data, keras.utils.PyDataset) or hasattr(data, "__iter__")


def is_reiterable(data):
    """Whether iterating `data` again starts it over (arrays, datasets)."""
    if arrays.is_arrays(data) or isinstance(data, keras.utils.PyDataset):
        return True
    return hasattr(data, "__iter__") and iter(data) is not data and not (
        type(data).__name__ == "generator"
    )


def is_endless(data):
    """Whether `data` is known to yield batches forever: a
    `tf.data.Dataset` that repeats, a `PyDataset` without a length."""
    if isinstance(data, keras.utils.PyDataset):
        return data.num_batches is None
    if _is_tf_dataset(data):
        import tensorflow as tf

        return int(data.cardinality()) == int(tf.data.INFINITE_CARDINALITY)
    return False


def iterate(data):
    """One pass over the batches of `data` (a `PyDataset` by index; an
    endless one, `num_batches` None, without end)."""
    if isinstance(data, keras.utils.PyDataset):
        count = data.num_batches
        for index in itertools.count() if count is None else range(count):
            yield data[index]
        return
    if _is_tf_dataset(data) and keras.backend.backend() != "tensorflow":
        yield from data.as_numpy_iterator()  # JAX, PyTorch: no tf.Tensor
        return
    yield from data


def _is_tf_dataset(data):
    return type(data).__module__.startswith("tensorflow") and hasattr(
        data, "as_numpy_iterator")


def cycle(data):
    """The batches of `data`, pass after pass where it can be read again.

    A `PyDataset` gets its `on_epoch_end` between passes, as in `fit`. A
    one-shot iterator (a generator) or an empty dataset ends: the caller
    says what ran out.
    """
    while True:
        empty = True
        for batch in iterate(data):
            empty = False
            yield batch
        if empty or not is_reiterable(data):
            return
        if isinstance(data, keras.utils.PyDataset):
            data.on_epoch_end()


def refuse_endless(data, name, steps, steps_name, what):
    """Data that never ends without its number of steps: a `ValueError`
    naming both, as `what` (a trial, an epoch) would never end."""
    if steps is None and is_endless(data):
        raise ValueError(
            f"`{name}` never ends (a {type(data).__name__} that repeats, or "
            f"a PyDataset without a length), so {what} would never end: pass "
            f"`{steps_name}`, the number of its batches to use per epoch. "
            f"Received: {steps_name}=None"
        )


def refuse_array_arguments(x, **arguments):
    """Refuses, by name, arguments that only arrays take (`y`,
    `batch_size`, `seed`) next to data `x` that yields its own batches."""
    for name, value in arguments.items():
        if value is not None:
            what = {"y": "batches and targets", "seed": "batches in its own "
                    "order"}.get(name, "batches of its own size")
            raise ValueError(
                f"`{name}` is for arrays: `x` is a {type(x).__name__}, which "
                f"yields its {what}. Received: {name}={value!r}"
            )


def refuse_other_data(x):
    """`x` that is neither arrays nor batches: a `TypeError` naming it."""
    raise TypeError(
        "`x` must be arrays (a NumPy array, or a list or dict of them) or "
        "data that yields batches (a tf.data.Dataset, a "
        "keras.utils.PyDataset, a DataLoader, a generator). Received: x of "
        f"type {type(x).__name__}"
    )
