"""Compatibility matrix, axis 5: every callback in `evaluate` and `predict`.

People pass one list of callbacks to `fit`, `evaluate` and `predict` alike,
often before the first `fit` (to see where an untrained model starts) and
after the last. Outside `fit` a callback gets `on_test_*` or `on_predict_*`
hooks without `on_train_begin`, and must neither fail nor change anything:

- before any `fit`: `evaluate` and `predict` with the callback return what
  the same calls return without it, the weights are left as they were, and
  the callback then does its job in a `fit` as in `test_alone` (checked
  against the same reference);
- after a `fit`: the same results, and the callback's record (`get_state`:
  its readings, gaps, snapshots, its average) unchanged.

The averages evaluate with their average when given to `evaluate` or
`predict` (tests/callbacks/test_exponential_moving_average.py); at the
default `apply_at_end=True` the model already holds it after `fit`, so the
results here are the same with and without them.
"""

import keras
import numpy as np
import pytest

from tests.callbacks.helpers import assert_close
from tests.callbacks.helpers import weights_of
from tests.compat import models
from tests.compat import references as ref


def outputs(model, case, callbacks):
    """`evaluate`'s losses and metrics, then `predict`'s outputs."""
    kwargs = {"batch_size": models.BATCH, "verbose": 0}
    if callbacks is not None:
        kwargs["callbacks"] = callbacks
    scores = model.evaluate(case.x_val, case.y_val, **kwargs)
    predictions = model.predict(case.x_val, **kwargs)
    return keras.tree.flatten([scores, predictions])


def assert_same_outputs(case, callback):
    """With `callback` the results equal those without it; weights kept."""
    held = weights_of(case.model)
    expected = outputs(case.model, case, None)
    got = outputs(case.model, case, [callback])
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    ref.assert_weights_equal(weights_of(case.model), held)


@pytest.mark.parametrize("callback", ref.CALLBACKS)
def test_evaluate_and_predict_before_the_first_fit(callback, tmp_path):
    if callback == "BackupAndRestore":
        case = models.FACTORIES["functional"]()
        backup_dir = tmp_path / "backup"
        assert_same_outputs(case, ref.make(callback, case, tmp_path))
        assert not backup_dir.exists() or not list(backup_dir.iterdir())
        return

    def before(case, made):
        assert_same_outputs(case, made)

    ref.run_alone(callback, models.FACTORIES["functional"], tmp_path,
                  before=before)


@pytest.mark.parametrize("callback", ref.CALLBACKS)
def test_evaluate_and_predict_after_a_fit(callback, tmp_path):
    case = models.FACTORIES["functional"]()
    made = ref.make(callback, case, tmp_path)
    ref.fit(case, [made], validation=callback in ref.NEEDS_VALIDATION)
    state = made.get_state() if hasattr(made, "get_state") else None
    assert_same_outputs(case, made)
    if state is not None:
        assert_close(made.get_state(), state)
