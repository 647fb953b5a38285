"""`tags`: every tag the writers write is one that `tags.py` names.

A real fit with every monitor, Keras' TensorBoard callback and `log_results`;
the event files are read back with TensorBoard's own reader (`tests.tb`), and
each tag found must be a constant of `tags.py` or what one of its builders
makes of the model's own layer and weight names.
"""

import os
import re

import keras
import numpy as np
import pytest
from tensorboard.plugins.custom_scalar import metadata

from keras_trainopt import TrainingDoctor
from keras_trainopt.reporting import custom_scalars_layout
from keras_trainopt.reporting import log_results
from keras_trainopt.reporting import tags
from tests import tb

LAYERS = ("hidden", "squash", "out")
WEIGHTS = ("kernel", "bias")
STATISTICS = (tags.ACTIVATION_MEAN, tags.ACTIVATION_STD,
              tags.SATURATED_FRACTION, tags.DEAD_FRACTION,
              tags.ACTIVATION_HISTOGRAM)


def all_tags(run_dir):
    """Every tag of a run: scalars, tensors (scalars, text) and histograms,
    less TensorBoard's own custom-scalars layout tag."""
    found = tb.load(run_dir).Tags()
    return (set(found["scalars"]) | set(found["tensors"])
            | set(found["histograms"])) - {metadata.CONFIG_SUMMARY_TAG}


def vocabulary():
    """The tags `tags.py` defines, its builders applied to the model's names."""
    names = {value for name, value in vars(tags).items()
             if name.isupper() and isinstance(value, str)}
    names |= {tags.update_ratio(f"{layer}/{weight}")
              for layer in LAYERS for weight in WEIGHTS}
    names |= {tags.update_ratio_by_layer(layer) for layer in LAYERS}
    names |= {tags.update_ratio_log10_by_layer(layer) for layer in LAYERS}
    names |= {tags.activation(layer, statistic)
              for layer in LAYERS for statistic in STATISTICS}
    names |= {tags.result("test_accuracy/final")}
    return names


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory):
    pytest.importorskip("tensorflow")  # Keras' TensorBoard writes with tf.summary
    """A fit with every monitor, Keras' TensorBoard and `log_results`."""
    log_dir = str(tmp_path_factory.mktemp("logs"))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 8)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, activation="relu", name=LAYERS[0]),
        keras.layers.Dense(8, activation="tanh", name=LAYERS[1]),
        keras.layers.Dense(2, activation="softmax", name=LAYERS[2]),
    ])
    model.compile(keras.optimizers.SGD(0.1),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    doctor = TrainingDoctor(log_dir, x_probe=x[:32], every=1, verbose=0)
    doctor.monitors["update_ratio"].every = 2
    model.fit(x, y, validation_split=0.25, epochs=2, batch_size=16, verbose=0,
              callbacks=[doctor, keras.callbacks.TensorBoard(log_dir)])
    log_results(log_dir, {"test_accuracy/final": 0.9})
    return log_dir


def test_every_written_tag_is_named_in_tags(log_dir):
    monitors = all_tags(os.path.join(log_dir, "monitors"))
    results = all_tags(os.path.join(log_dir, "results"))
    train = all_tags(os.path.join(log_dir, "train"))

    ours = monitors | results
    assert ours <= vocabulary(), sorted(ours - vocabulary())
    # The test reads what it should: each writer left its tags.
    assert {"loss_monitor/batch_loss", "loss_monitor/learning_rate",
            "loss_monitor/diagnosis", "generalization_gap",
            "overfitting_monitor/diagnosis", "doctor/advice",
            "update_ratio/hidden/kernel", "update_ratio_by_layer/squash",
            "update_ratio/log10_all_weights", "activations/hidden/mean",
            "activations/hidden/histogram", "activations/hidden/dead_fraction",
            "activations/squash/saturated_fraction"} <= monitors
    assert results == {"results/test_accuracy/final"}
    # Keras' TensorBoard callback writes the epoch tags the report reads.
    assert {tags.EPOCH_LOSS, tags.EPOCH_ACCURACY, tags.EPOCH_LEARNING_RATE,
            tags.EPOCH_GENERALIZATION_GAP} <= train


def test_the_layout_charts_what_the_monitors_write(log_dir):
    written = set()
    for run in tb.runs(log_dir):
        written |= all_tags(os.path.join(log_dir, run))
    charts = custom_scalars_layout().category[0].chart
    for chart in charts:
        patterns = chart.multiline.tag
        assert any(re.search(pattern, tag)
                   for pattern in patterns for tag in written), chart.title


def test_builders_and_patterns():
    assert tags.update_ratio("dense/kernel") == "update_ratio/dense/kernel"
    assert tags.update_ratio_by_layer("dense") == "update_ratio_by_layer/dense"
    assert tags.activation("dense", tags.DEAD_FRACTION) == (
        "activations/dense/dead_fraction")
    assert tags.result("acc/ema") == "results/acc/ema"
    exact = re.compile(tags.exactly(tags.LOSS_BATCH))
    assert exact.search("loss_monitor/batch_loss")
    assert not exact.search("loss_monitor/batch_loss_2")
    dead = re.compile(tags.activation_pattern(tags.DEAD_FRACTION))
    assert dead.search("activations/dense/dead_fraction")
    assert not dead.search("activations/dense/saturated_fraction")
    assert re.search(tags.starting(tags.RESULTS_PREFIX), "results/acc/ema")
    assert not re.search(tags.starting(tags.RESULTS_PREFIX), "my_results/a")
