import math

import keras
import numpy as np
import pytest

from keras_trainopt import UpdateRatioLogger
from keras_trainopt._internal import update_probe
from tests import tb
from tests.callbacks.helpers import FunctionsRun
from tests.callbacks.helpers import needs_steps_per_execution


def data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    return x, (x @ rng.normal(size=(6, 2))).astype("float32")


def model(lr=0.05, steps_per_execution=1, momentum=0.0, seed=0):
    keras.utils.set_random_seed(seed)
    net = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(5, activation="tanh", name="hidden",
                           bias_initializer="ones"),
        keras.layers.Dense(2, name="out", bias_initializer="ones"),
    ])
    net.compile(keras.optimizers.SGD(lr, momentum=momentum), loss="mse",
                steps_per_execution=steps_per_execution)
    return net


class Trajectory(keras.callbacks.Callback):
    """Records the trainable weights before every update (spe = 1)."""

    def __init__(self):
        super().__init__()
        self.weights = []

    def _record(self):
        self.weights.append(
            [keras.ops.convert_to_numpy(v) for v in self.model.trainable_weights]
        )

    def on_train_batch_begin(self, batch, logs=None):
        self._record()

    def on_train_end(self, logs=None):
        self._record()


def reference_ratios(trajectory, t):
    """cs231n's ratio across update t, from recorded weights, in NumPy."""
    before, after = trajectory.weights[t], trajectory.weights[t + 1]
    return [np.linalg.norm(a - b) / np.linalg.norm(b)
            for b, a in zip(before, after, strict=True)]


KEYS = ["hidden/kernel", "hidden/bias", "out/kernel", "out/bias"]


@pytest.mark.parametrize(
    "steps_per_execution", [1, pytest.param(4, marks=needs_steps_per_execution)]
)
def test_ratios_match_recorded_weights(steps_per_execution, tmp_path):
    x, y = data()
    trajectory = Trajectory()
    model(momentum=0.9).fit(x, y, batch_size=8, epochs=2, shuffle=False,
                            callbacks=[trajectory], verbose=0)

    logger = UpdateRatioLogger(str(tmp_path), every=5, verbose=0)
    model(momentum=0.9, steps_per_execution=steps_per_execution).fit(
        x, y, batch_size=8, epochs=2, shuffle=False, callbacks=[logger],
        verbose=0,
    )
    # 24 updates; updates 0, 5, 10, 15, 20 are measured, logged at t + 1.
    assert [s for s, _ in logger.history["out/kernel"]] == [1, 6, 11, 16, 21]
    assert sorted(logger.ratios) == sorted(KEYS)
    for key_index, key in enumerate(KEYS):
        got = [value for _, value in logger.history[key]]
        want = [reference_ratios(trajectory, t)[key_index]
                for t in (0, 5, 10, 15, 20)]
        np.testing.assert_allclose(got, want, rtol=1e-4)
        written = tb.scalars(str(tmp_path / "monitors"), f"update_ratio/{key}")
        assert [s for s, _ in written] == [1, 6, 11, 16, 21]
        np.testing.assert_allclose([v for _, v in written], want, rtol=1e-4)
    tags = tb.tags(str(tmp_path / "monitors"))
    assert "update_ratio/log10_all_weights" in tags
    by_layer = tb.scalars(str(tmp_path / "monitors"),
                          "update_ratio_by_layer/out")
    assert [v for _, v in by_layer] == pytest.approx(
        [value for _, value in logger.history["out/kernel"]], rel=1e-6)


@pytest.mark.parametrize("loss_scaled", [False, True])
def test_only_a_measured_update_runs_the_probe(loss_scaled):
    # A traced step that runs the probe's branch pays for it at every update
    # (on JAX, XLA copies every weight; on TensorFlow, the update runs in a
    # conditional's function): the executions that hold no measured update
    # run a function traced without it. With loss scaling the host cannot
    # tell which update is measured (a skipped one is not counted), and
    # PyTorch's eager step decides on the host anyway: there one function
    # runs throughout.
    x, y = data()
    net = model(momentum=0.9)
    if loss_scaled:
        net.compile(keras.optimizers.LossScaleOptimizer(
            keras.optimizers.SGD(0.05, momentum=0.9)), loss="mse")
    logger, run = UpdateRatioLogger(every=5, verbose=0), FunctionsRun()
    net.fit(x, y, batch_size=8, epochs=2, shuffle=False,
            callbacks=[logger, run], verbose=0)
    # 12 updates per epoch; 0, 5, 10, 15 and 20 are measured
    measured = [t % 5 == 0 for t in range(24)]
    assert [s for s, _ in logger.history["out/kernel"]] == [1, 6, 11, 16, 21]
    probed = {id(f) for f, m in zip(run.functions, measured, strict=True) if m}
    plain = {id(f) for f, m in zip(run.functions, measured, strict=True)
             if not m}
    if keras.backend.backend() != "torch" and not loss_scaled:
        assert len(probed) == 1 and len(plain) == 1 and probed != plain
    else:
        assert len(probed | plain) == 1


class Staleness(keras.callbacks.Callback):
    """Records (steps run, logger.step) at every batch end."""

    def __init__(self, logger):
        super().__init__()
        self.logger, self.seen = logger, []

    def on_train_batch_end(self, batch, logs=None):
        self.seen.append((batch + 1, self.logger.step))


@pytest.mark.parametrize("every, steps_per_execution", [
    (1, 1),
    pytest.param(3, 40, marks=needs_steps_per_execution),
    # the other two cells under `slow` (`.ci/run`): each about 3 s
    pytest.param(3, 1, marks=pytest.mark.slow),
    pytest.param(1, 40, marks=[needs_steps_per_execution, pytest.mark.slow]),
])
def test_long_epochs_keep_every_measurement(every, steps_per_execution):
    # 100 updates per epoch: the buffer is read several times an epoch, and
    # with 40 steps per execution one execution measures up to 40 updates.
    x, y = data(n=800)
    trajectory = Trajectory()
    model(momentum=0.9).fit(x, y, batch_size=8, epochs=1, shuffle=False,
                            callbacks=[trajectory], verbose=0)
    logger = UpdateRatioLogger(every=every, verbose=0)
    staleness = Staleness(logger)
    model(momentum=0.9, steps_per_execution=steps_per_execution).fit(
        x, y, batch_size=8, epochs=1, shuffle=False,
        callbacks=[logger, staleness], verbose=0,
    )
    measured = list(range(0, 100, every))
    assert [s for s, _ in logger.history["out/kernel"]] == [
        t + 1 for t in measured
    ]
    for key_index, key in enumerate(KEYS):
        want = [reference_ratios(trajectory, t)[key_index] for t in measured]
        got = [value for _, value in logger.history[key]]
        np.testing.assert_allclose(got, want, rtol=1e-4)
    if math.ceil(100 / every) <= update_probe.MAX_ROWS:
        # the epoch's measurements fit in the buffer: read at its end only
        assert all(step is None for _, step in staleness.seen)
        return
    # read during the epoch, before an execution once 32 updates ran since
    # the last read: at a batch end never more behind than those 32, the
    # execution just run and the updates since the last measured one
    behind = 32 + steps_per_execution + every
    for done, step in staleness.seen:
        if done >= behind:
            assert step is not None and done - step < behind


def test_plain_sgd_ratio_doubles_with_the_learning_rate():
    x, y = data()
    first = {}
    for lr in (0.01, 0.02):
        logger = UpdateRatioLogger(every=1, verbose=0)
        model(lr=lr).fit(x[:8], y[:8], batch_size=8, epochs=1,
                         callbacks=[logger], verbose=0)
        first[lr] = logger.ratios
    for key in KEYS:
        assert first[0.02][key] / first[0.01][key] == pytest.approx(2.0,
                                                                    rel=1e-4)


def test_training_is_unchanged_and_the_wrapper_removed():
    x, y = data()
    plain = model(momentum=0.9)
    plain.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    watched = model(momentum=0.9)
    watched.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0,
                callbacks=[UpdateRatioLogger(every=3, verbose=0)])
    for a, b in zip(plain.get_weights(), watched.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert "apply" not in vars(watched.optimizer)
    watched.fit(x, y, batch_size=8, epochs=1, verbose=0)  # no stale probe


def test_layer_verdicts_and_warning(capsys):
    x, y = data()
    logger = UpdateRatioLogger(every=1, verbose=1)
    model(lr=5.0).fit(x[:16], y[:16], batch_size=8, epochs=1,
                      callbacks=[logger], verbose=0)
    assert set(logger.layer_ratios) == {"hidden", "out"}
    assert logger.layer_ratios["out"] == logger.ratios["out/kernel"]
    assert "lower the learning rate" in capsys.readouterr().out


class LayerScale(keras.layers.Layer):
    """ConvNeXt's LayerScale as in `keras.applications.ConvNeXtTiny`: a
    per-channel scale initialized at 1e-6."""

    def build(self, input_shape):
        self.gamma = self.add_weight(
            shape=(input_shape[-1],),
            initializer=keras.initializers.Constant(1e-6), name="gamma")

    def call(self, x):
        return x * self.gamma


def scaled_model():
    """A residual block with a LayerScale and a LayerNormalization."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    h = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    h = h + LayerScale(name="scale")(keras.layers.Dense(8, name="branch")(h))
    h = keras.layers.LayerNormalization(name="norm")(h)
    net = keras.Model(inputs, keras.layers.Dense(2, name="out")(h))
    net.compile(keras.optimizers.Adam(1e-3), loss="mse")
    return net


def test_layers_of_vectors_alone_are_logged_but_not_judged(capsys):
    x, y = data()
    net = scaled_model()
    trajectory = Trajectory()
    logger = UpdateRatioLogger(every=1, verbose=1)
    net.fit(x[:16], y[:16], batch_size=16, epochs=1, shuffle=False,
            callbacks=[logger, trajectory], verbose=0)
    # the reference: the layers without a weight of rank 2 or more
    vectors_only = [layer.name for layer in net.layers if layer.weights
                    and all(len(w.shape) < 2 for w in layer.weights)]
    assert vectors_only == ["scale", "norm"]
    assert logger.unjudged_layers == vectors_only
    assert set(logger.layer_ratios) == {"hidden", "branch", "scale", "norm",
                                        "out"}  # all logged
    assert set(logger.judged_ratios) == {"hidden", "branch", "out"}
    # LayerScale's gamma moves by about the rate per step: 1e3 of itself
    index = [w.path for w in net.trainable_weights].index("scale/gamma")
    before, after = (weights[index] for weights in trajectory.weights[:2])
    expected = np.linalg.norm(after - before) / np.linalg.norm(before)
    assert logger.ratios["scale/gamma"] == pytest.approx(expected, rel=1e-4)
    assert expected > 100
    # no warning: the kernels' ratios are inside the band
    assert all(1e-4 <= r <= 1e-2 for r in logger.judged_ratios.values())
    assert "UpdateRatioLogger" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(every=0), ValueError, "every"),
        (dict(every=1.5), TypeError, "every"),
        (dict(low=0.0), ValueError, "low"),
        (dict(low=1e-2, high=1e-3), ValueError, "low"),
    ],
)
def test_bad_arguments(kwargs, error, name):
    with pytest.raises(error, match=f"`{name}`"):
        UpdateRatioLogger(**kwargs)


# -- found by fuzzing (issue 7) ------------------------------------------------


@pytest.mark.parametrize("log_dir", [5, ""])
def test_log_dir_is_checked_when_built(log_dir):
    # before: accepted; `fit` failed in os.fspath, or "" wrote into the
    # working folder
    with pytest.raises((TypeError, ValueError), match=r"`log_dir` must be"):
        UpdateRatioLogger(log_dir)


def test_a_backup_does_not_hold_the_probe_buffers(tmp_path):
    # On JAX the buffers are optimizer variables while `fit` runs; a backup
    # taken then must still load into a run without the logger.
    import warnings

    from keras_trainopt import BackupAndRestore

    x, y = data()
    backup_dir = str(tmp_path / "backup")
    net = model()
    net.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0,
            # first: its last backup is written while the logger still runs
            callbacks=[BackupAndRestore(backup_dir, delete_checkpoint=False),
                       UpdateRatioLogger(every=1, verbose=0)])
    resumed = BackupAndRestore(backup_dir, delete_checkpoint=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the callbacks differ"
        model(seed=1).fit(x, y, batch_size=8, epochs=2, verbose=0,
                          callbacks=[resumed])
    assert resumed.restored_epoch == 2
