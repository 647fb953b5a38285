"""`ActivationMonitor`: per-layer activation statistics on a probe batch."""

import keras
from keras.src.utils import io_utils  # print_msg: not in the public API

from keras_trainopt._internal import callback_state
from keras_trainopt._internal import validation
from keras_trainopt.diagnostics import activations
from keras_trainopt.reporting import tags
from keras_trainopt.reporting import tensorboard

_KINDS = {
    "tanh": "tanh", "hard_tanh": "tanh", "soft_sign": "tanh",
    "softsign": "tanh", "sigmoid": "sigmoid", "hard_sigmoid": "sigmoid",
    "relu": "relu", "relu6": "relu",
}


def activation_kind(layer):
    """`"tanh"`, `"sigmoid"`, `"relu"` or `None`, from the layer's activation."""
    if isinstance(layer, keras.layers.ReLU):
        return "relu" if float(layer.negative_slope) == 0.0 else None
    function = getattr(layer, "activation", None)
    return _KINDS.get(getattr(function, "__name__", None))


class ActivationMonitor(callback_state.Restorable, keras.callbacks.Callback):
    """Per-layer activation statistics on a fixed probe batch.

    Saturated tanh/sigmoid units and dead ReLUs stop learning, silently: the
    loss just stalls (cs231n). Every `every_epochs` epochs this callback runs
    the probe batch `x` through the model and records, for each layer, the
    mean and standard deviation of its outputs, a histogram, the
    `saturated_fraction` (tanh/sigmoid-like layers: outputs within
    `saturation_tolerance` of the output range from an asymptote) and the
    `dead_fraction` (ReLU-like layers: units that output zero for the whole
    probe batch). The last values are in `stats`, a dict per layer name; with
    `log_dir` they go to TensorBoard under `activations/<layer>/...`.

    Example:

    >>> import keras, numpy as np
    >>> from keras_trainopt import ActivationMonitor
    >>> model = keras.Sequential([
    ...     keras.Input((8,)),
    ...     keras.layers.Dense(32, activation="relu", name="hidden",
    ...                        bias_initializer=keras.initializers.Constant(-50.0)),
    ...     keras.layers.Dense(1, name="out")])
    >>> model.compile("sgd", "mse")
    >>> x = np.random.default_rng(0).normal(size=(64, 8))
    >>> monitor = ActivationMonitor(x, verbose=0)
    >>> _ = model.fit(x, x[:, :1], epochs=1, callbacks=[monitor], verbose=0)
    >>> monitor.stats["hidden"]["dead_fraction"]
    1.0

    Args:
        x: the probe batch, as the model's input (an array, or a list/dict
            for several inputs); a few hundred samples are plenty.
        log_dir: TensorBoard folder (the run `monitors`); `None` writes
            nothing.
        every_epochs: probe every this many epochs (int >= 1).
        layers: names of the layers to probe; `None` probes every layer.
        saturation_tolerance: distance from an asymptote, as a fraction of
            the output range, that counts as saturated (in (0, 0.5)).
        warn_fraction: a saturated or dead fraction above this is reported
            when `verbose` (in (0, 1]).
        verbose: 1 prints a warning for each saturated or dead layer.

    Attributes:
        stats: `{layer: {"mean", "std", "histogram", "saturated_fraction",
            "dead_fraction"}}` from the last probe; fractions are `None` where
            they do not apply.

    Reference: cs231n, "Neural Networks Part 1" (activation functions) and
    "Part 3" (activation and gradient distributions per layer).
    """

    def __init__(
        self,
        x,
        log_dir=None,
        every_epochs=1,
        layers=None,
        *,
        saturation_tolerance=0.05,
        warn_fraction=0.5,
        verbose=1,
    ):
        super().__init__()
        self.x = validation.check_inputs("x", x)
        self.log_dir = validation.check_path("log_dir", log_dir, allow_none=True)
        self.every_epochs = validation.check_int(
            "every_epochs", every_epochs, low=1
        )
        if layers is not None and (
            not isinstance(layers, (list, tuple))
            or not all(isinstance(name, str) for name in layers)
        ):
            raise TypeError(
                "`layers` must be a list of layer names or None. "
                f"Received: layers={layers!r}"
            )
        if layers is not None and not layers:
            raise ValueError(
                "`layers` must name at least one layer, or be None for all. "
                "Received: layers=[]"
            )
        self.layers = None if layers is None else list(layers)
        self.saturation_tolerance = validation.check_real(
            "saturation_tolerance", saturation_tolerance, low=0.0, high=0.5,
            low_open=True, high_open=True,
        )
        self.warn_fraction = validation.check_real(
            "warn_fraction", warn_fraction, low=0.0, high=1.0, low_open=True
        )
        self.verbose = validation.check_int("verbose", verbose, low=0)
        self.stats = {}
        self._probe = None
        self._probe_of = None
        self._probed_layers = []
        self._writer = None

    def get_state(self):
        """The latest statistics per layer, for a restart."""
        return {"stats": self.stats}

    def set_state(self, state):
        """Restores what `get_state` returned."""
        self.stats = dict(state.get("stats", {}))

    def on_train_begin(self, logs=None):
        # The probe model is built once per model and reused by later fits.
        if self._probe is None or self._probe_of is not self.model:
            self._probed_layers = self._select_layers()
            inputs = self.model.inputs
            self._probe = keras.Model(
                inputs[0] if len(inputs) == 1 else inputs,
                [layer.output for layer in self._probed_layers],
                name="activation_probe",
            )
            self._probe_of = self.model
        self._writer = tensorboard.open_run(self.log_dir, "monitors")

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_epochs == 0:
            self.probe(step=epoch)

    def on_train_end(self, logs=None):
        tensorboard.close_run(self._writer)
        self._writer = None

    def probe(self, step=0):
        """Runs the probe batch now; returns and stores `stats`."""
        if self._probe is None:
            raise ValueError(
                "ActivationMonitor.probe() runs once training has started "
                "(it needs the model); pass the callback to `fit`."
            )
        # A compiled forward pass (traced once per probe model), in inference
        # mode: about half the time of an eager call.
        outputs = self._probe.predict_on_batch(self.x)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        for layer, output in zip(self._probed_layers, outputs):
            kind = activation_kind(layer)
            stats = activations.activation_stats(
                output, kind, self.saturation_tolerance
            )
            self.stats[layer.name] = stats
            self._write(layer.name, stats, step)
            self._warn(layer.name, stats, step)
        if self._writer is not None:
            self._writer.flush()
        return self.stats

    def _select_layers(self):
        model = self.model
        try:
            inputs = model.inputs
        except (AttributeError, ValueError):
            inputs = None
        if not inputs:
            raise ValueError(
                f"ActivationMonitor cannot probe {type(model).__name__}: it "
                "needs a Sequential or Functional model whose layers' outputs "
                "are defined (a subclassed model has none). Build the model "
                "with keras.Input, or monitor a Functional sub-model."
            )
        candidates = [
            layer for layer in model.layers
            if not isinstance(layer, keras.layers.InputLayer)
        ]
        if self.layers is None:
            return candidates
        names = {layer.name: layer for layer in candidates}
        missing = [name for name in self.layers if name not in names]
        if missing:
            raise ValueError(
                f"ActivationMonitor: `layers` lists no layer named {missing} "
                f"in the model. Layers: {sorted(names)}"
            )
        return [names[name] for name in self.layers]

    def _write(self, name, stats, step):
        if self._writer is None:
            return
        self._writer.scalar(tags.activation(name, tags.ACTIVATION_MEAN),
                            stats["mean"], step)
        self._writer.scalar(tags.activation(name, tags.ACTIVATION_STD),
                            stats["std"], step)
        for key, statistic in (("saturated_fraction", tags.SATURATED_FRACTION),
                               ("dead_fraction", tags.DEAD_FRACTION)):
            if stats[key] is not None:
                self._writer.scalar(tags.activation(name, statistic),
                                    stats[key], step)
        counts, edges = stats["histogram"]
        self._writer.histogram_from_counts(
            tags.activation(name, tags.ACTIVATION_HISTOGRAM), counts, edges,
            step
        )

    def _warn(self, name, stats, step):
        if not self.verbose:
            return
        saturated, dead = stats["saturated_fraction"], stats["dead_fraction"]
        if saturated is not None and saturated > self.warn_fraction:
            io_utils.print_msg(
                f"\nEpoch {step + 1}: ActivationMonitor: layer {name} is "
                f"{saturated:.0%} saturated: lower its initial weights "
                "(e.g. Glorot/He initialization) or the learning rate."
            )
        if dead is not None and dead > self.warn_fraction:
            io_utils.print_msg(
                f"\nEpoch {step + 1}: ActivationMonitor: {dead:.0%} of the "
                f"units of layer {name} are dead (zero for every probe input): "
                "lower the learning rate, check the bias initialization, or "
                "try LeakyReLU."
            )
