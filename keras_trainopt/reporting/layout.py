"""The TensorBoard custom-scalars layout: ready-made charts for the monitors."""

import numpy as np
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata
from tensorboard.util import tensor_util

from keras_trainopt.reporting import tags

# Titles the monitors name to leave a chart out (`RunWriter.omit_charts`).
# TensorBoard's layout cannot set a log axis: the update ratios are charted
# as log10 values (tags `update_ratio_log10_by_layer/<layer>`).
UPDATE_RATIO_LOG10_CHART = ("weight-update / weight ratio per layer, log10 "
                            "(healthy about -3, band -4 to -2)")
SATURATED_CHART = "saturated fraction"
DEAD_CHART = "dead ReLU fraction"
# (chart title, tag regular expressions); tags of every run are matched.
CHARTS = (
    ("accuracy: train and validation", (tags.exactly(tags.EPOCH_ACCURACY),)),
    ("generalization gap (train - validation)",
     (tags.exactly(tags.GENERALIZATION_GAP),
      tags.exactly(tags.EPOCH_GENERALIZATION_GAP))),
    ("learning rate per epoch", (tags.exactly(tags.EPOCH_LEARNING_RATE),)),
    ("learning rate per step", (tags.exactly(tags.LEARNING_RATE_STEP),)),
    ("batch loss", (tags.exactly(tags.LOSS_BATCH),)),
    (UPDATE_RATIO_LOG10_CHART,
     (tags.starting(tags.UPDATE_RATIO_LOG10_BY_LAYER_PREFIX),)),
    ("weight-update / weight ratio per weight",
     (tags.starting(tags.UPDATE_RATIO_PREFIX) + ".*/",)),
    (SATURATED_CHART,
     (tags.activation_pattern(tags.SATURATED_FRACTION),)),
    (DEAD_CHART,
     (tags.activation_pattern(tags.DEAD_FRACTION),)),
)


def custom_scalars_layout(omit=()):
    """The layout as a `tensorboard` `Layout` protocol buffer.

    >>> from keras_trainopt.reporting import custom_scalars_layout
    >>> [chart.title for chart in custom_scalars_layout().category[0].chart][:2]
    ['accuracy: train and validation', 'generalization gap (train - validation)']

    Args:
        omit: titles of `CHARTS` to leave out (charts that cannot have data
            in a run); the charts are tag regular expressions matched in
            every run.

    Reference: TensorBoard's custom-scalars plugin (`layout_pb2`).
    """
    if isinstance(omit, str) or not isinstance(
            omit, (list, tuple, set, frozenset)) or not all(
            isinstance(title, str) for title in omit):
        raise TypeError(
            "`omit` must be a collection of chart titles (strings). "
            f"Received: omit={omit!r}"
        )
    return layout_pb2.Layout(
        category=[
            layout_pb2.Category(
                title="keras_trainopt",
                chart=[
                    layout_pb2.Chart(
                        title=title,
                        multiline=layout_pb2.MultilineChartContent(
                            tag=list(tags)
                        ),
                    )
                    for title, tags in CHARTS
                    if title not in omit
                ],
            )
        ]
    )


def layout_summary(omit=()):
    """The layout as a `Summary` protocol buffer, ready to write.

    What `tensorboard.plugins.custom_scalar.summary.pb` builds, without the
    TensorFlow it imports (absent on the JAX and PyTorch backends).
    """
    tensor = tensor_util.make_tensor_proto(
        np.array(custom_scalars_layout(omit).SerializeToString(),
                 dtype=object)
    )
    summary = summary_pb2.Summary()
    summary.value.add(
        tag=metadata.CONFIG_SUMMARY_TAG,
        metadata=metadata.create_summary_metadata(),
        tensor=tensor,
    )
    return summary
