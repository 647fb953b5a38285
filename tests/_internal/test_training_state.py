"""The training state shared by `find_learning_rate` and `BackupAndRestore`.

References: Keras' own variable lists and `get_weights`, the random modules
themselves, and backup files read with plain `np.load` + `json` (the format
as documented), including a backup written by the code before this module
existed (`data/format1-epoch-000003.backup.npz`).
"""

import json
import os
import random
import shutil

import keras
import numpy as np
import pytest

import keras_trainopt as kt
from keras_trainopt._internal import optimizers
from keras_trainopt._internal import training_state
from tests._internal.data.make_format1_backup import model_with_dropout
from tests.callbacks.helpers import tiny_data

OLD_BACKUP = os.path.join(
    os.path.dirname(__file__), "data", "format1-epoch-000003.backup.npz"
)


def plain_read(path):
    """A backup file read by hand, from the documented layout."""
    with np.load(path, allow_pickle=False) as archive:
        meta = json.loads(str(archive["__meta__"]))
        arrays = {k: np.array(archive[k]) for k in archive.files}
    state = json.loads(meta["state"])["__dict__"]
    values = [arrays[ref["__ndarray__"]] for ref in state["variables"]]
    return meta, values, state["callbacks"]["__dict__"]


def values(variables):
    return [np.array(keras.ops.convert_to_numpy(v.value)) for v in variables]


def train(model, epochs=1):
    x, y = tiny_data()
    model.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0)


# -- a backup written before the refactor still loads ------------------------------


def test_an_old_format_backup_restores_every_variable_and_callback(tmp_path):
    shutil.copy(OLD_BACKUP, tmp_path / "epoch-000003.backup.npz")
    meta, saved, callbacks = plain_read(OLD_BACKUP)
    assert meta["format"] == 1 and meta["epoch"] == 3
    model = model_with_dropout(seed=7)  # other initial weights
    train(model)  # and other optimizer slots
    monitor = kt.LossMonitor(every=1, verbose=0)
    decay = kt.ExponentialDecay(0.01, decay=0.3)
    backup = kt.BackupAndRestore(tmp_path, delete_checkpoint=False)
    x, y = tiny_data()
    history = model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0,
                        callbacks=[monitor, decay, backup])
    assert backup.restored_epoch == 3
    assert history.epoch == []  # all three epochs were done
    restored = model.variables + model.optimizer.variables
    assert [v.path for v in restored] == [path for path, _ in meta["variables"]]
    for variable, value, expected in zip(restored, values(restored), saved,
                                         strict=True):
        np.testing.assert_array_equal(value, expected, err_msg=variable.path)
    assert monitor.losses == callbacks["LossMonitor"]["__dict__"]["losses"]
    assert monitor.steps == list(range(1, 13))
    assert decay.get_state() == {"initial_learning_rate": 0.01}


def test_read_backup_of_an_old_file_matches_a_plain_read():
    _, saved, callbacks = plain_read(OLD_BACKUP)
    state = training_state.read_backup(OLD_BACKUP)
    assert len(state["variables"]) == len(saved) == 15
    for value, expected in zip(state["variables"], saved, strict=True):
        np.testing.assert_array_equal(value, expected)
        assert value.dtype == expected.dtype
    assert state["callbacks"]["ExponentialDecay"] == {
        "initial_learning_rate": 0.01
    }
    assert (state["callbacks"]["LossMonitor"]["learning_rates"]
            == callbacks["LossMonitor"]["__dict__"]["learning_rates"])


# -- writing keeps the documented layout -----------------------------------------


def test_a_written_backup_has_the_format_2_layout(tmp_path):
    model = model_with_dropout()
    train(model)
    variables = training_state.variables(model)
    path = training_state.backup_path(tmp_path, 12)
    assert os.path.basename(path) == "epoch-000012.backup.npz"
    assert os.path.basename(training_state.backup_path(tmp_path, 12, 7)) == (
        "epoch-000012-step-000000007.backup.npz"
    )
    training_state.write_backup(
        path, {"epoch": 12, "step": 0, "updates": 48}, variables,
        {"A": {"x": np.arange(3)}},
    )
    meta, saved, callbacks = plain_read(path)
    assert sorted(meta) == ["epoch", "format", "metrics", "state", "step",
                            "updates", "variables"]
    assert meta["format"] == 2 and meta["epoch"] == 12
    assert meta["step"] == 0 and meta["updates"] == 48 and meta["metrics"] == []
    keras_order = model.variables + model.optimizer.variables
    assert meta["variables"] == [[v.path, list(v.shape)] for v in keras_order]
    for value, expected in zip(saved, values(keras_order), strict=True):
        np.testing.assert_array_equal(value, expected)
    assert callbacks == {"A": {"__dict__": {"x": {"__ndarray__": "a0"}}}}
    assert os.listdir(tmp_path) == ["epoch-000012.backup.npz"]  # no partial


def test_backup_files_lists_backups_newest_first_and_nothing_else(tmp_path):
    for name in ["epoch-000002.backup.npz", "epoch-000010.backup.npz",
                 "epoch-000003.partial-99.backup.npz", "notes.txt",
                 "epoch-1.backup.npz.bak"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "epoch-000002-step-000000005.backup.npz").write_bytes(b"")
    assert training_state.backup_files(tmp_path) == [
        ((10, 0), os.path.join(tmp_path, "epoch-000010.backup.npz")),
        ((2, 5), os.path.join(tmp_path, "epoch-000002-step-000000005.backup.npz")),
        ((2, 0), os.path.join(tmp_path, "epoch-000002.backup.npz")),
    ]
    assert training_state.backup_files(tmp_path / "missing") == []


def test_an_unknown_format_is_refused(tmp_path):
    path = tmp_path / "epoch-000001.backup.npz"
    meta = {"format": 3, "epoch": 1, "variables": [], "state": "null"}
    np.savez(path, __meta__=np.array(json.dumps(meta)))
    with pytest.raises(ValueError, match="unknown backup format 3"):
        training_state.read_backup(path)


# -- the variables -------------------------------------------------------------------


def test_variables_are_keras_lists_in_order_less_scratch_unless_asked():
    model = model_with_dropout()
    train(model)
    kept = optimizers.add_state_variable(model, name="kept")
    scratch = optimizers.add_state_variable(model, name="scratch",
                                            backed_up=False)
    optimizers.attach_state_variables(model.optimizer, [kept, scratch])
    try:
        everything = list(model.variables) + list(model.optimizer.variables)
        ids = [id(v) for v in everything]
        assert id(scratch) in ids and id(kept) in ids
        assert [id(v) for v in training_state.variables(model)] == [
            id(v) for v in everything if v is not scratch
        ]
        assert [id(v) for v in training_state.variables(model, scratch=True)] == [
            id(v) for v in everything
        ]
    finally:
        optimizers.detach_state_variables(model.optimizer, [kept, scratch])


def test_variables_of_a_model_without_optimizer_are_its_own():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert [id(v) for v in training_state.variables(model)] == [
        id(v) for v in model.variables
    ]


@pytest.mark.parametrize("change", ["count", "shape"])
def test_assign_refuses_values_that_do_not_fit_and_changes_nothing(change):
    model = model_with_dropout()
    variables = training_state.variables(model)
    before = values(variables)
    new = [np.ones_like(v) for v in before]
    if change == "count":
        new = new[:-1]
        match = f"it holds {len(new)} variables, this model and optimizer " \
                f"have {len(before)}"
    else:
        new[-1] = np.ones((7,), dtype=new[-1].dtype)
        match = "it holds shape \\(7,\\) where .* has shape"
    with pytest.raises(ValueError, match=match):
        training_state.assign(variables, new)
    for value, expected in zip(values(variables), before, strict=True):
        np.testing.assert_array_equal(value, expected)


# -- in memory: capture and restore -----------------------------------------------


def test_capture_and_restore_undo_training_and_random_draws():
    model = model_with_dropout()
    model.optimizer.learning_rate = 0.05
    weights = model.get_weights()
    keras.random.uniform((1,))  # creates Keras' global seed generator
    captured = training_state.capture(model)
    assert model.optimizer.built  # its slots were captured too
    slots = values(model.optimizer.variables)
    seed_before = keras.ops.convert_to_numpy(model.layers[1].seed_generator.state)

    expected = (random.random(), np.random.rand(),
                keras.ops.convert_to_numpy(keras.random.uniform((3,))))
    train(model, epochs=2)  # moves weights, slots and the dropout seed
    model.optimizer.learning_rate = 0.5
    random.random(), np.random.rand(), keras.random.uniform((3,))

    training_state.restore(model, captured)
    for value, before in zip(model.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(value, before)
    for value, before in zip(values(model.optimizer.variables), slots, strict=True):
        np.testing.assert_array_equal(value, before)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model.layers[1].seed_generator.state),
        seed_before,
    )
    assert float(keras.ops.convert_to_numpy(
        model.optimizer.learning_rate)) == pytest.approx(0.05)
    assert random.random() == expected[0]
    assert np.random.rand() == expected[1]
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(keras.random.uniform((3,))), expected[2]
    )


def test_the_random_state_round_trips_through_a_backup_file(tmp_path):
    random.seed(4)
    np.random.seed(4)
    state = training_state.global_random_state()
    expected = (random.random(), np.random.permutation(10))
    path = training_state.backup_path(tmp_path, 1, 3)
    model = model_with_dropout()
    training_state.write_backup(
        path, {"epoch": 1, "step": 3, "updates": 7},
        training_state.variables(model), {}, random_state=state,
    )
    random.seed(99)
    np.random.seed(99)
    read = training_state.read_backup(path)
    assert (read["epoch"], read["step"], read["updates"]) == (1, 3, 7)
    training_state.set_global_random_state(read["random"])
    assert random.random() == expected[0]
    np.testing.assert_array_equal(np.random.permutation(10), expected[1])


@pytest.mark.parametrize(
    "damage, says",
    [
        (lambda path: open(path, "r+b").truncate(os.path.getsize(path) // 2),
         "truncated"),
        (lambda path: open(path, "w").write("0"), "truncated or overwritten"),
    ],
)
def test_a_damaged_backup_says_it_is_damaged(tmp_path, damage, says):
    path = training_state.backup_path(tmp_path, 1)
    training_state.write_backup(
        path, {"epoch": 1}, training_state.variables(model_with_dropout()), {}
    )
    damage(path)
    with pytest.raises(training_state.DamagedBackupError, match=says):
        training_state.read_backup(path)


def test_a_flipped_byte_is_a_bad_checksum(tmp_path):
    path = training_state.backup_path(tmp_path, 1)
    training_state.write_backup(
        path, {"epoch": 1}, training_state.variables(model_with_dropout()), {}
    )
    data = bytearray(open(path, "rb").read())
    member = data.find(b"\x93NUMPY", 200)  # inside an array member's data
    data[member + 120] ^= 0xFF
    open(path, "wb").write(bytes(data))
    with pytest.raises(training_state.DamagedBackupError, match="bad checksum"):
        training_state.read_backup(path)
