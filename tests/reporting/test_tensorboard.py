"""Our runs beside Keras' TensorBoard callback, the layout, chief-only writes."""

import json
import os
import re

import keras
import numpy as np
import pytest
from tensorboard.plugins.custom_scalar import layout_pb2

import keras_trainopt as kt
from keras_trainopt.reporting import tensorboard
from tests import tb


def test_all_monitors_beside_keras_tensorboard(tmp_path):
    pytest.importorskip("tensorflow")  # Keras' callback writes with tf.summary
    log_dir = str(tmp_path)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, activation="relu", name="hidden"),
        keras.layers.Dense(2, activation="softmax", name="out"),
    ])
    model.compile(optimizer=kt.nesterov_sgd(0.05),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    callbacks = [
        kt.StepDecay(factor=0.5, every=2),
        kt.OverfittingMonitor(log_dir=log_dir, verbose=0),
        kt.LossMonitor(log_dir, every=1, verbose=0),
        kt.UpdateRatioLogger(log_dir, every=5, verbose=0),
        kt.ActivationMonitor(x[:64], log_dir, verbose=0),
        keras.callbacks.TensorBoard(log_dir),
    ]
    model.fit(x, y, validation_split=0.25, epochs=3, batch_size=30,
              callbacks=callbacks, verbose=0)

    assert tb.runs(log_dir) == ["monitors", "train", "validation"]
    monitors = os.path.join(log_dir, "monitors")
    # One shared event file for all our monitors, not one per callback.
    assert len(os.listdir(monitors)) == 1
    tags = tb.tags(monitors)
    assert {"loss_monitor/batch_loss", "loss_monitor/learning_rate",
            "generalization_gap", "update_ratio/hidden/kernel",
            "activations/hidden/dead_fraction"} <= tags

    # Epoch-level series line up with Keras' own: same steps (epochs).
    keras_acc = tb.scalars(os.path.join(log_dir, "train"), "epoch_accuracy")
    keras_val = tb.scalars(os.path.join(log_dir, "validation"),
                           "epoch_accuracy")
    gap = tb.scalars(monitors, "generalization_gap")
    assert [s for s, _ in gap] == [s for s, _ in keras_acc] == [0, 1, 2]
    for (_, g), (_, a), (_, v) in zip(gap, keras_acc, keras_val, strict=True):
        assert abs(g - (a - v)) < 1e-6
    # Keras records the rate we set (and the gap, placed before it).
    assert [round(v, 6) for _, v in tb.scalars(
        os.path.join(log_dir, "train"), "epoch_learning_rate")] == [
            0.05, 0.05, 0.025]
    # Batch-level series use the optimizer's step count, as Keras does.
    steps = [s for s, _ in tb.scalars(monitors, "loss_monitor/batch_loss")]
    assert steps == list(range(1, 16))


def test_custom_scalars_layout_is_written(tmp_path):
    writer = tensorboard.open_run(str(tmp_path), "monitors")
    tensorboard.close_run(writer)
    accumulator = tb.load(str(tmp_path / "monitors"))
    content = accumulator.PluginTagToContent("custom_scalars")
    assert content, "no custom_scalars layout in the run"
    (tag,) = accumulator.Tags()["tensors"]
    proto = accumulator.Tensors(tag)[0].tensor_proto
    layout = layout_pb2.Layout()
    layout.ParseFromString(proto.string_val[0])
    titles = [chart.title for chart in layout.category[0].chart]
    assert "generalization gap (train - validation)" in titles
    assert any("update" in title for title in titles)


def test_only_the_chief_writes(tmp_path, monkeypatch):
    worker_1 = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(worker_1))
    assert tensorboard.open_run(str(tmp_path), "monitors") is None
    assert not os.listdir(tmp_path)
    worker_1["task"]["index"] = 0
    monkeypatch.setenv("TF_CONFIG", json.dumps(worker_1))
    writer = tensorboard.open_run(str(tmp_path), "monitors")
    assert writer is not None
    tensorboard.close_run(writer)


def test_no_log_dir_writes_nothing_but_keeps_attributes(tmp_path, monkeypatch):
    monitor = kt.LossMonitor(None, every=1, verbose=0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    monkeypatch.chdir(tmp_path)
    model.fit(np.ones((8, 2)), np.ones((8, 1)), batch_size=4, epochs=1,
              callbacks=[monitor], verbose=0)
    assert len(monitor.losses) == 2
    assert os.listdir(tmp_path) == []


# -- found by fuzzing (issue 7) ------------------------------------------------


def test_open_run_checks_its_arguments(tmp_path):
    file = tmp_path / "file"
    file.write_text("")
    # before: os.fspath's TypeError (5), event files in the working folder
    # (""), or NotADirectoryError (a file)
    for log_dir in (5, "", file):
        with pytest.raises((TypeError, ValueError), match=r"`log_dir` must be"):
            tensorboard.open_run(log_dir, "monitors")
    with pytest.raises(TypeError, match=r"`run` must be a folder name"):
        tensorboard.open_run(str(tmp_path), 5)


def test_close_run_refuses_what_open_run_did_not_return():
    # before: AttributeError "'str' object has no attribute 'path'"
    with pytest.raises(TypeError, match=r"`writer` must be a RunWriter"):
        tensorboard.close_run("writer")


def test_the_layout_summary_is_byte_for_byte_tensorboards():
    from tensorboard.plugins.custom_scalar import summary as custom_scalar

    pytest.importorskip("tensorflow")  # TensorBoard's builder imports it
    from keras_trainopt.reporting import layout

    expected = custom_scalar.pb(layout.custom_scalars_layout())
    assert layout.layout_summary().SerializeToString() == (
        expected.SerializeToString()
    )


WITHOUT_TENSORFLOW = """
import sys
sys.modules["tensorflow"] = None  # any import of TensorFlow now fails
import keras, numpy as np
import keras_trainopt as kt
log_dir = sys.argv[1]
x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
y = (x[:, 0] > 0).astype("int32")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, "tanh"),
                          keras.layers.Dense(2, "softmax")])
model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
model.fit(x, y, epochs=2, validation_split=0.25, verbose=0,
          callbacks=[kt.TrainingDoctor(log_dir, x[:8], every=1,
                                       update_ratio_every=1, verbose=0)])
kt.log_results(log_dir, {"test_accuracy": 0.5})
print(kt.write_report(log_dir))
"""


@pytest.mark.slow  # a new Python per backend; .venv-jax checks it without TF
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_every_writer_works_where_tensorflow_is_not_installed(tmp_path, backend):
    pytest.importorskip(backend)
    import subprocess
    import sys

    env = dict(os.environ, KERAS_BACKEND=backend)
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_TENSORFLOW, str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("report.html")
    monitors = os.path.join(tmp_path, "monitors")
    tags = tb.tags(monitors)
    assert "custom_scalars__config__" in tags
    assert {"loss_monitor/batch_loss", "generalization_gap",
            "doctor/advice"} <= tags
    assert tb.scalars(os.path.join(tmp_path, "results"),
                      "results/test_accuracy") == [(0, 0.5)]


def test_write_puts_scalars_and_a_histogram_in_one_event(tmp_path):
    from tensorboard.plugins.histogram import summary_v2 as histogram_summary
    from tensorboard.plugins.scalar import summary_v2 as scalar_summary

    writer = tensorboard.open_run(str(tmp_path), "run")
    values = np.array([0.5, -2.0, 3.25, 7.0])
    # 0.1 is not a float32: the value read back is TensorBoard's rounding
    writer.write(5, {"a/x": 0.1, "a/y": float("nan")}, {"a/h": values})
    writer.write(6, {"a/x": -3.0})
    tensorboard.close_run(writer)
    run = str(tmp_path / "run")
    reference = scalar_summary.scalar_pb("a/x", 0.1).value[0]
    stored = tb.load(run).Tensors("a/x")
    assert [e.step for e in stored] == [5, 6]
    assert stored[0].tensor_proto == reference.tensor
    assert tb.scalars(run, "a/x")[1] == (6, -3.0)
    assert np.isnan(tb.scalars(run, "a/y")[0][1])
    assert tb.load(run).SummaryMetadata("a/x") == reference.metadata
    histogram = tb.load(run).Tensors("a/h")
    assert [e.step for e in histogram] == [5]
    expected = histogram_summary.histogram_pb("a/h", values, 30).value[0]
    assert histogram[0].tensor_proto == expected.tensor
    sizes = [(e.step, len(e.summary.value)) for e in _events(run)]
    assert [size for size in sizes if size[0] in (5, 6)] == [(5, 3), (6, 1)]


def test_write_series_puts_each_steps_values_in_one_event(tmp_path):
    from tensorboard.plugins.scalar import summary_v2 as scalar_summary

    writer = tensorboard.open_run(str(tmp_path), "run")
    writer.write_series([10, 20, 30], {"loss": [3.0, 2.0, 1.5],
                                       "lr": [0.5, 0.25, 0.125]},
                        descriptions={"loss": "The batch loss."})
    tensorboard.close_run(writer)
    run = str(tmp_path / "run")
    assert tb.scalars(run, "loss") == [(10, 3.0), (20, 2.0), (30, 1.5)]
    assert tb.scalars(run, "lr") == [(10, 0.5), (20, 0.25), (30, 0.125)]
    # the description is TensorBoard's own metadata for it
    assert tb.load(run).SummaryMetadata("loss") == scalar_summary.scalar_pb(
        "loss", 0.0, description="The batch loss.").value[0].metadata
    sizes = [(e.step, len(e.summary.value)) for e in _events(run)]
    assert [size for size in sizes if size[0] in (10, 20, 30)] == [
        (10, 2), (20, 2), (30, 2)]


def test_write_series_refuses_a_series_of_another_length(tmp_path):
    writer = tensorboard.open_run(str(tmp_path), "run")
    try:
        with pytest.raises(ValueError, match=r"tag='lr'"):
            writer.write_series([1, 2], {"loss": [1.0, 0.5], "lr": [0.1]})
    finally:
        tensorboard.close_run(writer)


def _events(run_dir):
    from tensorboard.backend.event_processing import event_file_loader

    for name in sorted(os.listdir(run_dir)):
        yield from event_file_loader.EventFileLoader(
            os.path.join(run_dir, name)
        ).Load()


# -- issue 18 ------------------------------------------------------------------


def _layout_titles(run_dir):
    accumulator = tb.load(run_dir)
    (event,) = accumulator.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout()
    layout.ParseFromString(event.tensor_proto.string_val[0])
    return [chart.title for chart in layout.category[0].chart]


@pytest.mark.parametrize("activation, absent, present", [
    ("relu", "saturated fraction", "dead ReLU fraction"),
    ("tanh", "dead ReLU fraction", "saturated fraction"),
])
def test_charts_that_cannot_have_data_are_left_out(tmp_path, activation,
                                                   absent, present):
    import keras
    import numpy as np

    from keras_trainopt import TrainingDoctor

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    model = keras.Sequential([keras.Input((4,)),
                              keras.layers.Dense(8, activation=activation),
                              keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    doctor = TrainingDoctor(str(tmp_path), x_probe=x[:16], metric="loss",
                            verbose=0, update_ratio_every=1)
    model.fit(x, x[:, :1], validation_split=0.25, epochs=1, verbose=0,
              callbacks=[doctor])
    run = str(tmp_path / "monitors")
    titles = _layout_titles(run)
    assert absent not in titles and present in titles
    # every chart left in has data in the run
    written = tb.tags(run)
    for chart in layout_pb2.Layout.FromString(
            tb.load(run).Tensors("custom_scalars__config__")[0]
            .tensor_proto.string_val[0]).category[0].chart:
        if "accuracy" in chart.title or "epoch" in chart.title or (
                "generalization" in chart.title):
            continue  # Keras' own TensorBoard callback writes those
        assert any(re.search(p, t) for p in chart.multiline.tag
                   for t in written), chart.title
    # the per-layer update ratios are charted as log10 values
    for layer in ("dense", "dense_1"):
        linear = tb.scalars(run, f"update_ratio_by_layer/{layer}")
        logged = tb.scalars(run, f"update_ratio_log10_by_layer/{layer}")
        assert [s for s, _ in logged] == [s for s, _ in linear]
        np.testing.assert_allclose([v for _, v in logged],
                                   np.log10([v for _, v in linear]),
                                   rtol=1e-5)
