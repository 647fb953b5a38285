"""In-memory inputs: an array, or a list or dict of arrays (several inputs).

The helpers that take user data as arrays (`find_learning_rate`,
`recompute_batchnorm_statistics`) count and slice it here, so that every
one of them accepts the same shapes of input that `model.fit` does.
"""

import numpy as np


def is_arrays(data):
    """True for an array-like or a list or dict of arrays.

    A tuple is not taken for arrays here: where batches may come instead
    (an iterable of `(x, y)` pairs), a tuple is one of those.
    """
    return isinstance(data, (np.ndarray, dict, list)) or hasattr(
        data, "__array__"
    )


def _parts(data):
    if isinstance(data, dict):
        return list(data.values())
    if isinstance(data, (list, tuple)) and data and hasattr(data[0], "shape"):
        return list(data)
    return None


def num_samples(data, name="x"):
    """The number of samples (the length of the first axis)."""
    parts = _parts(data)
    first = data if parts is None else parts[0]
    if not hasattr(first, "__len__"):
        raise TypeError(
            f"`{name}` must be a NumPy array (or a list or dict of them). "
            f"Received: {name} of type {type(data).__name__}"
        )
    return len(first)


def take(data, index):
    """`data[index]` along the first axis (a slice or an index array)."""
    if isinstance(data, dict):
        return {k: np.asarray(v)[index] for k, v in data.items()}
    if _parts(data) is not None:
        return [np.asarray(v)[index] for v in data]
    return np.asarray(data)[index]
