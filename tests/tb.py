"""Reading TensorBoard event files back with TensorBoard's own reader."""

import os

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util


def load(run_dir):
    accumulator = EventAccumulator(
        run_dir,
        size_guidance={"tensors": 0, "histograms": 0, "scalars": 0},
    )
    accumulator.Reload()
    return accumulator


def scalars(run_dir, tag):
    """[(step, value)] of a scalar tag written with tf.summary (v2)."""
    accumulator = load(run_dir)
    return [
        (event.step, float(tensor_util.make_ndarray(event.tensor_proto)))
        for event in accumulator.Tensors(tag)
    ]


def tags(run_dir):
    return set(load(run_dir).Tags()["tensors"])


def runs(log_dir):
    return sorted(
        name for name in os.listdir(log_dir)
        if os.path.isdir(os.path.join(log_dir, name))
    )
