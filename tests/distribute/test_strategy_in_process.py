"""Quick in-process checks of the distribution rules.

Which worker writes is decided by `TF_CONFIG` alone, so it is checked here
with `TF_CONFIG` set by hand (no cluster). The replica-context code paths
run under `OneDeviceStrategy`, which needs no logical devices. The real
strategies run in subprocesses: test_distribute.py.
"""

import json
import os

import keras
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")  # tf.distribute strategies

import keras_trainopt as kt  # noqa: E402
from keras_trainopt.reporting import close_run  # noqa: E402
from keras_trainopt.reporting import open_run  # noqa: E402
from keras_trainopt.reporting import write_report  # noqa: E402


def tf_config(index):
    return json.dumps({
        "cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
        "task": {"type": "worker", "index": index},
    })


def model_and_data(strategy=None):
    strategy = strategy or tf.distribute.get_strategy()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 1))).astype("float32")
    with strategy.scope():
        model = keras.Sequential([
            keras.Input((4,)),
            keras.layers.Dense(3, activation="tanh", name="hidden"),
            keras.layers.Dense(1, name="out"),
        ])
        model.set_weights([
            rng.normal(scale=0.5, size=w.shape).astype("float32")
            for w in model.get_weights()
        ])
        model.compile(keras.optimizers.SGD(0.05), loss="mse")
    return model, x, y


@pytest.mark.parametrize("index", [0, 1])
def test_snapshot_files_only_on_the_chief(tmp_path, monkeypatch, index):
    monkeypatch.setenv("TF_CONFIG", tf_config(index))
    model, x, y = model_and_data()
    snapshots = kt.SnapshotEnsemble(cycles=2, directory=tmp_path / "snap")
    checkpoints = kt.CheckpointEnsemble(every=1, keep=1,
                                        directory=tmp_path / "ckpt")
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0,
              callbacks=[snapshots, checkpoints])
    # every worker keeps the snapshots in memory
    assert snapshots.snapshot_steps == [4, 8]
    assert checkpoints.snapshot_steps == [8]
    if index == 0:
        assert sorted(os.listdir(tmp_path / "snap")) == [
            "snapshot-step000000004.weights.h5",
            "snapshot-step000000008.weights.h5",
        ]
        # the older checkpoint was written, then removed (keep=1)
        assert os.listdir(tmp_path / "ckpt") == [
            "snapshot-step000000008.weights.h5"
        ]
    else:
        assert os.listdir(tmp_path) == []


def test_write_report_only_on_the_chief(tmp_path, monkeypatch):
    writer = open_run(str(tmp_path), "monitors")  # the chief's logs
    writer.scalars("loss_monitor/batch_loss", range(5), [1, .8, .6, .5, .4])
    close_run(writer)
    before = sorted(os.listdir(tmp_path))
    monkeypatch.setenv("TF_CONFIG", tf_config(1))
    assert write_report(str(tmp_path)) is None
    assert sorted(os.listdir(tmp_path)) == before
    # a worker's own log_dir holds nothing, or does not exist: no error
    assert write_report(str(tmp_path / "missing")) is None


def _fit_with_monitors(strategy=None):
    model, x, y = model_and_data(strategy)
    ratios = kt.UpdateRatioLogger(None, every=3, verbose=0)
    loss = kt.LossMonitor(None, every=1, verbose=0)
    ema = kt.ExponentialMovingAverage(decay=0.9, every=2)
    model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0,
              callbacks=[ratios, loss, ema])
    return model, ratios, loss, ema


def test_replica_code_paths_equal_the_plain_ones():
    """Under a strategy the update probe and the averages run their
    replica-context paths (the update outside any branch, the variables
    mirrored); on one device they measure and average the same."""
    _, ratios, loss, ema = _fit_with_monitors()
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    model, s_ratios, s_loss, s_ema = _fit_with_monitors(strategy)
    probe = s_ratios._probe
    with strategy.scope():  # made in the strategy's scope
        assert probe._ratios.value.aggregation == (
            tf.VariableAggregation.ONLY_FIRST_REPLICA)
    assert list(s_ratios.history) == list(ratios.history)
    for key, points in ratios.history.items():
        steps, values = zip(*points, strict=True)
        assert steps == (1, 4, 7, 10)
        s_steps, s_values = zip(*s_ratios.history[key], strict=True)
        assert s_steps == steps
        np.testing.assert_allclose(s_values, values, rtol=0, atol=1e-6)
    assert s_loss.steps == loss.steps
    np.testing.assert_allclose(s_loss.losses, loss.losses, rtol=0, atol=1e-6)
    assert s_ema.num_averaged == ema.num_averaged == 6
    for a, b in zip(s_ema.averaged_weights(), ema.averaged_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_xla_refuses_a_host_read_in_the_step():
    """Why test_distribute.py's `xla` runs check TPU-safety: a host
    callback inside the step (what a TPU cannot run) fails to compile."""
    from keras_trainopt._internal import apply_hooks

    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    model, x, y = model_and_data(strategy)
    model.jit_compile = True

    class HostRead(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            apply_hooks.add(self.model, apply_hooks.Hook(
                before=lambda: tf.py_function(lambda: 1.0, [], tf.float32)
            ))

    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="unsupported operations"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0,
                  callbacks=[HostRead()])


@pytest.mark.parametrize("index", [0, 1])
def test_backups_only_on_the_chief(tmp_path, monkeypatch, index):
    monkeypatch.setenv("TF_CONFIG", tf_config(index))
    model, x, y = model_and_data()
    backup = kt.BackupAndRestore(tmp_path / "backup", delete_checkpoint=False)
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0,
              callbacks=[backup])
    if index == 0:
        assert sorted(os.listdir(tmp_path / "backup")) == [
            "epoch-000001.backup.npz", "epoch-000002.backup.npz"
        ]
    else:
        assert not os.path.exists(tmp_path / "backup")  # nothing written


def test_backup_and_restore_resumes_under_a_strategy(tmp_path):
    """Interrupted and resumed under OneDeviceStrategy: same as one run."""

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("preempted")

    def run(interrupt):
        strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
        folder = tmp_path / f"backup{interrupt}"
        model, x, y = model_and_data(strategy)
        ema = kt.ExponentialMovingAverage(0.5, every=1, apply_at_end=False)
        monitor = kt.LossMonitor(every=1, verbose=0)
        callbacks = [kt.StepDecay(0.05, 0.5, 1), ema, monitor,
                     kt.BackupAndRestore(folder)]
        if interrupt:
            with pytest.raises(RuntimeError):
                model.fit(x, y, batch_size=8, epochs=4, shuffle=False,
                          verbose=0, callbacks=callbacks + [Interrupt()])
            model, x, y = model_and_data(strategy)
            ema = kt.ExponentialMovingAverage(0.5, every=1, apply_at_end=False)
            monitor = kt.LossMonitor(every=1, verbose=0)
            callbacks = [kt.StepDecay(0.05, 0.5, 1), ema, monitor,
                         kt.BackupAndRestore(folder)]
        model.fit(x, y, batch_size=8, epochs=4, shuffle=False, verbose=0,
                  callbacks=callbacks)
        return model.get_weights(), ema.averaged_weights(), monitor.losses

    plain, resumed = run(False), run(True)
    for got, want in zip(resumed[0] + resumed[1], plain[0] + plain[1], strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(resumed[2], plain[2], rtol=0, atol=1e-6)


def _fit_mixed_precision(strategy=None):
    from tests.callbacks.test_mixed_precision import data
    from tests.callbacks.test_mixed_precision import spiky_mse

    strategy = strategy or tf.distribute.get_strategy()
    x, y = data()  # batches 2 and 7 of each epoch overflow float16
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = keras.Sequential([
                keras.Input((4,)),
                keras.layers.Dense(3, activation="tanh", name="hidden"),
                keras.layers.Dense(1, name="out"),
            ])
            model.compile(keras.optimizers.SGD(0.05), loss=spiky_mse)
        callbacks = {
            "decay": kt.ExponentialDecay(0.05, decay=0.1, unit="step"),
            "ema": kt.ExponentialMovingAverage(0.9, every=1,
                                               apply_at_end=False),
            "loss": kt.LossMonitor(None, every=1, verbose=0),
            "ratios": kt.UpdateRatioLogger(None, every=1, verbose=0),
        }
        model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0,
                  callbacks=list(callbacks.values()))
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return model, callbacks


@pytest.mark.slow  # two mixed-precision fits with every callback
def test_mixed_precision_replica_paths_equal_the_plain_ones():
    """`mixed_float16` in a replica context: the skipped steps of
    `LossScaleOptimizer` are skipped by every callback, as on one device."""
    plain, ours = _fit_mixed_precision()
    model, theirs = _fit_mixed_precision(
        tf.distribute.OneDeviceStrategy("/cpu:0")
    )
    applied = 24 - 6  # 3 epochs of 8 steps, 6 of them skipped
    for m in (plain, model):
        inner = m.optimizer.inner_optimizer
        assert int(keras.ops.convert_to_numpy(inner.iterations)) == applied
    assert theirs["ema"].num_averaged == ours["ema"].num_averaged == applied
    assert theirs["loss"].steps == ours["loss"].steps == list(
        range(1, applied + 1))
    np.testing.assert_allclose(theirs["loss"].losses, ours["loss"].losses,
                               rtol=0, atol=1e-6)
    want_rate = 0.05 * np.exp(-0.1 * applied)
    got_rate = float(keras.ops.convert_to_numpy(
        model.optimizer.inner_optimizer.learning_rate))
    assert got_rate == pytest.approx(want_rate, rel=1e-6)
    for key, points in ours["ratios"].history.items():
        assert [s for s, _ in theirs["ratios"].history[key]] == [
            s for s, _ in points] == list(range(1, applied + 1))
        np.testing.assert_allclose([v for _, v in theirs["ratios"].history[key]],
                                   [v for _, v in points], rtol=0, atol=1e-6)
    for a, b in zip(model.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    for a, b in zip(theirs["ema"].averaged_weights(),
                    ours["ema"].averaged_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_under_a_strategy_no_due_probe_is_skipped():
    """Workers that skipped probes by their own clocks could disagree, and
    the probe's forward pass would then wait on a worker that never runs
    it: under a strategy `max_overhead` skips nothing."""
    probes = {}
    for label, strategy in (("plain", None),
                            ("strategy", tf.distribute.OneDeviceStrategy(
                                "/cpu:0"))):
        model, x, y = model_and_data(strategy)
        seen = probes[label] = []

        class Counted(kt.ActivationMonitor):
            def probe(self, step=0, _seen=seen):
                _seen.append(step)
                return super().probe(step)

        model.fit(x, y, batch_size=8, epochs=5, verbose=0, callbacks=[
            Counted(x, verbose=0, max_overhead=1e-6)])
    assert probes["plain"] == [0, 1, 4]  # a probe per quarter hour at most
    assert probes["strategy"] == [0, 1, 2, 3, 4]
