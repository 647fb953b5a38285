"""The TensorBoard tags keras_trainopt writes and reads, each named once.

The monitors write these tags, the custom-scalars layout charts them and
`write_report` reads them back: a tag spelled twice is a chart that silently
goes blank when one spelling changes. Every writer, `layout.py` and the report
take their tags (and the regular expressions that match them) from here.
"""

import re

# -- LossMonitor (run `monitors`) ----------------------------------------------
LOSS_BATCH = "loss_monitor/batch_loss"  # mean training loss per read point
LEARNING_RATE_STEP = "loss_monitor/learning_rate"  # the rate at each point
LOSS_DIAGNOSIS = "loss_monitor/diagnosis"  # text: the verdict at the end

# -- OverfittingMonitor (run `monitors`) ---------------------------------------
GENERALIZATION_GAP = "generalization_gap"  # train - validation, per epoch
FIT_DIAGNOSIS = "overfitting_monitor/diagnosis"  # text: the verdict at the end

# -- TrainingDoctor (run `monitors`) -------------------------------------------
ADVICE = "doctor/advice"  # text: "- **<severity>**: <message>" lines

# -- UpdateRatioLogger (run `monitors`) ----------------------------------------
UPDATE_RATIO_PREFIX = "update_ratio/"  # + "<layer>/<weight>": one weight
UPDATE_RATIO_BY_LAYER_PREFIX = "update_ratio_by_layer/"  # + "<layer>"
# + "<layer>": log10 of the same, for the custom-scalars chart (no log axis)
UPDATE_RATIO_LOG10_BY_LAYER_PREFIX = "update_ratio_log10_by_layer/"
UPDATE_RATIO_LOG10_ALL = "update_ratio/log10_all_weights"  # histogram

# -- ActivationMonitor (run `monitors`) ----------------------------------------
ACTIVATIONS_PREFIX = "activations/"  # + "<layer>/<statistic>"
ACTIVATION_MEAN = "mean"
ACTIVATION_STD = "std"
SATURATED_FRACTION = "saturated_fraction"  # tanh / sigmoid layers
DEAD_FRACTION = "dead_fraction"  # ReLU layers
ACTIVATION_HISTOGRAM = "histogram"  # a histogram, the others are scalars

# -- keras.callbacks.TensorBoard (runs `train`, `validation`) ------------------
# It writes each epoch log `<name>` as `epoch_<name>`; these are read only.
EPOCH_LOSS = "epoch_loss"
EPOCH_VAL_LOSS = "epoch_val_loss"  # compare_learning_rates: one run per rate
EPOCH_ACCURACY = "epoch_accuracy"
EPOCH_LEARNING_RATE = "epoch_learning_rate"
EPOCH_GENERALIZATION_GAP = "epoch_" + GENERALIZATION_GAP  # from the epoch logs

# -- search_hyperparameters (one run per trial, `<stage>-<trial>`) ------------
SEARCH_SCORE = "score"  # the trial's objective, the HParams session's metric

# -- log_results (run `results`) -----------------------------------------------
RESULTS_PREFIX = "results/"  # + "<metric>/<variant>"


def update_ratio(weight_key):
    """The tag of one weight's update ratio.

    Args:
        weight_key: `"<layer>/<weight>"`, as `UpdateRatioLogger.ratios` keys it.
    """
    return UPDATE_RATIO_PREFIX + weight_key


def update_ratio_log10_by_layer(layer):
    """`update_ratio_log10_by_layer/<layer>`: log10 of a layer's ratio.

    >>> from keras_trainopt.reporting import tags
    >>> tags.update_ratio_log10_by_layer("dense")
    'update_ratio_log10_by_layer/dense'
    """
    return UPDATE_RATIO_LOG10_BY_LAYER_PREFIX + layer


def update_ratio_by_layer(layer):
    """The tag of a layer's update ratio (that of its largest weight).

    Args:
        layer: the layer's name.
    """
    return UPDATE_RATIO_BY_LAYER_PREFIX + layer


def activation(layer, statistic):
    """The tag of one statistic of a layer's activations.

    Args:
        layer: the layer's name.
        statistic: `ACTIVATION_MEAN`, `ACTIVATION_STD`, `SATURATED_FRACTION`,
            `DEAD_FRACTION` or `ACTIVATION_HISTOGRAM`.
    """
    return f"{ACTIVATIONS_PREFIX}{layer}/{statistic}"


def result(name):
    """The tag of a result logged with `log_results`.

    Args:
        name: the result's name, `"<metric>/<variant>"` or any string.
    """
    return RESULTS_PREFIX + name


def exactly(tag):
    """A regular expression matching `tag` and nothing else.

    Args:
        tag: one of the tags above.
    """
    return "^" + re.escape(tag) + "$"


def starting(prefix):
    """A regular expression matching every tag that starts with `prefix`.

    Args:
        prefix: one of the `*_PREFIX` tags above.
    """
    return "^" + re.escape(prefix)


def activation_pattern(statistic):
    """A regular expression matching one statistic of every layer.

    Args:
        statistic: e.g. `SATURATED_FRACTION`.
    """
    return starting(ACTIVATIONS_PREFIX) + ".*/" + re.escape(statistic) + "$"
