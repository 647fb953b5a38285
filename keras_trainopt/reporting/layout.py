"""The TensorBoard custom-scalars layout: ready-made charts for the monitors."""

import numpy as np
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata
from tensorboard.util import tensor_util

from keras_trainopt.reporting import tags

# (chart title, tag regular expressions); tags of every run are matched.
CHARTS = (
    ("accuracy: train and validation", (tags.exactly(tags.EPOCH_ACCURACY),)),
    ("generalization gap (train - validation)",
     (tags.exactly(tags.GENERALIZATION_GAP),
      tags.exactly(tags.EPOCH_GENERALIZATION_GAP))),
    ("learning rate per epoch", (tags.exactly(tags.EPOCH_LEARNING_RATE),)),
    ("learning rate per step", (tags.exactly(tags.LEARNING_RATE_STEP),)),
    ("batch loss", (tags.exactly(tags.LOSS_BATCH),)),
    ("weight-update / weight ratio per layer (healthy ~1e-3)",
     (tags.starting(tags.UPDATE_RATIO_BY_LAYER_PREFIX),)),
    ("weight-update / weight ratio per weight",
     (tags.starting(tags.UPDATE_RATIO_PREFIX) + ".*/",)),
    ("saturated fraction",
     (tags.activation_pattern(tags.SATURATED_FRACTION),)),
    ("dead ReLU fraction",
     (tags.activation_pattern(tags.DEAD_FRACTION),)),
)


def custom_scalars_layout():
    """The layout as a `tensorboard` `Layout` protocol buffer.

    >>> from keras_trainopt.reporting import custom_scalars_layout
    >>> [chart.title for chart in custom_scalars_layout().category[0].chart][:2]
    ['accuracy: train and validation', 'generalization gap (train - validation)']

    Args:
        (none): the charts are `CHARTS`, tag regular expressions matched in
            every run.

    Reference: TensorBoard's custom-scalars plugin (`layout_pb2`).
    """
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
                ],
            )
        ]
    )


def layout_summary():
    """The layout as a `Summary` protocol buffer, ready to write.

    What `tensorboard.plugins.custom_scalar.summary.pb` builds, without the
    TensorFlow it imports (absent on the JAX and PyTorch backends).
    """
    tensor = tensor_util.make_tensor_proto(
        np.array(custom_scalars_layout().SerializeToString(), dtype=object)
    )
    summary = summary_pb2.Summary()
    summary.value.add(
        tag=metadata.CONFIG_SUMMARY_TAG,
        metadata=metadata.create_summary_metadata(),
        tensor=tensor,
    )
    return summary
