import os

import numpy as np
import pytest

from keras_trainopt import CheckpointEnsemble
from tests.callbacks.helpers import WeightRecorder
from tests.callbacks.helpers import tiny_data
from tests.callbacks.helpers import tiny_model


def fit(model, callbacks, epochs=6):
    x, y = tiny_data(48)
    return model.fit(x, y, epochs=epochs, batch_size=8, callbacks=callbacks,
                     verbose=0, shuffle=False)


def test_keeps_the_last_k_of_every_nth_epoch(tmp_path):
    model = tiny_model()
    recorder = WeightRecorder()
    checkpoints = CheckpointEnsemble(every=2, keep=2, directory=tmp_path)
    fit(model, [recorder, checkpoints])
    assert checkpoints.snapshot_steps == [24, 36]  # after epochs 3 and 5
    for snapshot, epoch in zip(checkpoints.snapshots, (3, 5), strict=True):
        for a, b in zip(snapshot, recorder.epoch_ends[epoch], strict=True):
            np.testing.assert_array_equal(a, b)
    assert sorted(os.listdir(tmp_path)) == [
        "snapshot-step000000024.weights.h5",
        "snapshot-step000000036.weights.h5",
    ]


def test_ensemble_is_the_mean_of_the_checkpoints():
    model = tiny_model()
    checkpoints = CheckpointEnsemble(keep=3)
    fit(model, [checkpoints])
    x, _ = tiny_data(10, seed=4)
    outputs = []
    for weights in checkpoints.snapshots:
        member = tiny_model()
        member.set_weights(weights)
        outputs.append(member.predict(x, verbose=0))
    np.testing.assert_allclose(checkpoints.ensemble().predict(x, verbose=0),
                               np.mean(outputs, axis=0), rtol=1e-5)


def test_state_round_trip():
    model = tiny_model()
    checkpoints = CheckpointEnsemble(keep=2)
    fit(model, [checkpoints])
    other = CheckpointEnsemble(keep=2)
    other.set_state(checkpoints.get_state())
    assert other.snapshot_steps == checkpoints.snapshot_steps
    for a, b in zip(other.snapshots[-1], checkpoints.snapshots[-1], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"every": 0}, ValueError, "Received: every=0"),
        ({"keep": 0}, ValueError, "Received: keep=0"),
        ({"keep": "3"}, TypeError, "Received: keep='3'"),
    ],
)
def test_bad_arguments_are_refused_by_name(kwargs, error, text):
    with pytest.raises(error) as info:
        CheckpointEnsemble(**kwargs)
    assert text in str(info.value)
