"""`ActivationMonitor`: per-layer activation statistics on a probe batch."""

import difflib
import os
import time
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from keras_trainopt._internal import callback_state
from keras_trainopt._internal import console
from keras_trainopt._internal import distribute
from keras_trainopt._internal import layers as layer_paths
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


def _close_paths(name, paths):
    """Paths whose last part is, or is close to, the last part of `name`."""
    tail = name.split(layer_paths.SEP)[-1].lower()
    tails = [path.split(layer_paths.SEP)[-1].lower() for path in paths]
    close = set(difflib.get_close_matches(tail, tails, n=5)) | {tail}
    return [path for path, end in zip(paths, tails, strict=True) if end in close]


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

    Nested models are probed inside: a `keras.applications` backbone or any
    Sequential or functional sub-model is walked down, and its layers are
    named by path, `"<sub-model>/<layer>"` (e.g. `"MobileNetV3Small/re_lu_3"`;
    deeper nesting adds more parts). By default every top-level layer is
    probed (a sub-model counts as one layer: its output), plus, inside
    sub-models, the activation layers only (`Activation`, `ReLU`,
    `LeakyReLU`, `PReLU`, `ELU`, `Softmax`, and layers with a fused
    nonlinear `activation`): a backbone has hundreds of layers, and the
    saturated and dead fractions are about the nonlinearities. `layers="all"`
    probes every layer at every depth; `layers=[...]` takes paths. All the
    probed layers come from one forward pass of the probe batch, in inference
    mode, once every `every_epochs` epochs (never per step).

    With `max_overhead`, the probe also keeps its cost to that share of the
    training time: a due probe is skipped while less than `cost /
    max_overhead` seconds have passed since the end of the previous one
    (`cost`: the fastest probe of this `fit`, the first call of a probe
    model, which traces it, not counted). Short epochs are then probed less
    often, long ones at every due epoch; the last epoch of a `fit` (or the
    one at which training stops) is probed whenever a due probe was skipped
    since the previous one, so `stats` ends on the final weights. Under a
    `tf.distribute` strategy or in JAX processes of their own no due probe
    is skipped: the workers must agree on which epochs they probe, and a
    clock of their own would not.

    A subclassed model has no graph of layer outputs to read: it is refused
    at train begin, unless `model=` names a Sequential or functional model
    to probe instead (e.g. the functional backbone the subclassed model
    calls; `x` is then that model's input).

    Examples:
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
        layers: the layers to probe: a list of names, paths for layers
            inside sub-models (`"backbone/conv_1"`); `None`, every top-level
            layer and the activation layers inside sub-models; `"all"`, every
            layer at every depth.
        saturation_tolerance: distance from an asymptote, as a fraction of
            the output range, that counts as saturated (in (0, 0.5)).
        warn_fraction: a saturated or dead fraction above this is reported
            when `verbose` (in (0, 1]).
        verbose: 1 prints a warning for each saturated or dead layer.
        model: the Sequential or functional model to probe, `x` being its
            input; `None` (default) probes the model being trained.
        max_overhead: the largest share of the training time the probes
            may take (in (0, 1]), e.g. 0.01; `None` (default) probes at
            every due epoch, whatever it costs.

    Attributes:
        stats: `{layer: {"mean", "std", "histogram", "saturated_fraction",
            "dead_fraction"}}` from the last probe; fractions are `None` where
            they do not apply.

    Reference: cs231n, "Neural Networks Part 1" (activation functions) and
    "Part 3" (activation and gradient distributions per layer).
    """

    def __init__(
        self,
        x: Any,  # the probe inputs: an array, or a list or dict of them
        log_dir: str | os.PathLike | None = None,
        every_epochs: int = 1,
        layers: Sequence[str] | None = None,
        *,
        saturation_tolerance: float = 0.05,
        warn_fraction: float = 0.5,
        verbose: int = 1,
        model: keras.Model | None = None,
        max_overhead: float | None = None,
    ) -> None:
        super().__init__()
        self.x = validation.check_inputs("x", x)
        self.log_dir = validation.check_path("log_dir", log_dir, allow_none=True)
        self.every_epochs = validation.check_int(
            "every_epochs", every_epochs, low=1
        )
        every_layer = isinstance(layers, str) and layers == "all"
        if layers is not None and not every_layer and (
            not isinstance(layers, (list, tuple))
            or not all(isinstance(name, str) for name in layers)
        ):
            raise TypeError(
                "`layers` must be a list of layer names, \"all\" or None. "
                f"Received: layers={layers!r}"
            )
        if layers is not None and not layers:
            raise ValueError(
                "`layers` must name at least one layer, or be None for all. "
                "Received: layers=[]"
            )
        self.layers = layers if layers is None or every_layer else list(layers)
        if model is not None and not layer_paths.is_graph_model(model):
            raise TypeError(
                "`model` must be a Sequential or functional Keras model "
                "(the one `x` feeds), or None for the model being trained. "
                f"Received: model={model!r}"
            )
        self.probe_model = model
        self.saturation_tolerance = validation.check_real(
            "saturation_tolerance", saturation_tolerance, low=0.0, high=0.5,
            low_open=True, high_open=True,
        )
        self.warn_fraction = validation.check_real(
            "warn_fraction", warn_fraction, low=0.0, high=1.0, low_open=True
        )
        self.verbose = validation.check_int("verbose", verbose, low=0)
        self.max_overhead = validation.check_real(
            "max_overhead", max_overhead, low=0.0, high=1.0, low_open=True,
            allow_none=True,
        )
        self.stats = {}
        self._probe = None
        self._probe_of = None
        self._probed_layers = []
        self._writer = None
        self._calls = 0  # forward passes of the current probe model
        self._budget = None  # the time budget of this fit, or None
        # a due probe skipped since the last one ran: the fit's last epoch
        # runs it (state: a resumed fit must end on the same probe)
        self._pending = False
        self._ended_epoch = None  # the last epoch that ended in this fit

    def get_state(self) -> dict[str, Any]:
        """The latest statistics per layer, for a restart."""
        return {"stats": self.stats, "pending": self._pending}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restores what `get_state` returned."""
        self.stats = dict(state.get("stats", {}))
        self._pending = bool(state.get("pending", False))

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        # The probe model is built once per model and reused by later fits.
        target = self.probe_model if self.probe_model is not None else self.model
        if self._probe is None or self._probe_of is not target:
            self._probed_layers = self._select_layers(target)
            self._probe = layer_paths.RecordingModel(
                target, [path for path, _ in self._probed_layers]
            )
            self._probe_of = target
            self._calls = 0
        self._budget = (
            None if self.max_overhead is None
            or distribute.is_distributed(self.model)
            else _TimeBudget(self.max_overhead)
        )
        self._ended_epoch = None
        self._writer = tensorboard.open_run(self.log_dir, "monitors")
        if self._writer is not None:  # charts that cannot have data
            from keras_trainopt.reporting import layout

            kinds = {activation_kind(layer) for _, layer in self._probed_layers}
            omit = []
            if not kinds & {"tanh", "sigmoid"}:
                omit.append(layout.SATURATED_CHART)
            if "relu" not in kinds:
                omit.append(layout.DEAD_CHART)
            self._writer.omit_charts(omit)

    def on_epoch_end(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> None:
        self._ended_epoch = epoch
        if (epoch + 1) % self.every_epochs == 0:
            if self._budget is None or self._budget.allows():
                self._timed_probe(epoch)
                return
            self._pending = True
        last = (epoch + 1 >= (self.params or {}).get("epochs", epoch + 2)
                or self.model.stop_training)
        if self._pending and last:
            self._timed_probe(epoch)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        # A probe skipped since the last one, and training stopped after
        # this monitor's epoch end (by a callback later in the list), or a
        # resumed fit had no epoch left to run: probe the final weights.
        if self._pending:
            last = (self._ended_epoch if self._ended_epoch is not None
                    else max((self.params or {}).get("epochs", 1) - 1, 0))
            self._timed_probe(last)
        tensorboard.close_run(self._writer)
        self._writer = None

    def _timed_probe(self, epoch):
        traces = self._calls == 0
        start = time.monotonic()
        self.probe(step=epoch)
        if self._budget is not None:
            self._budget.spent(time.monotonic() - start, counts=not traces)
        self._pending = False

    def probe(self, step: int = 0) -> dict[str, dict[str, Any]]:
        """Runs the probe batch now; returns and stores `stats`."""
        if self._probe is None:
            raise ValueError(
                "ActivationMonitor.probe() runs once training has started "
                "(it needs the model); pass the callback to `fit`."
            )
        measured = self._measure()
        for name, stats in measured.items():
            self.stats[name] = stats
            self._warn(name, stats, step)
        if self._writer is not None:
            self._write(measured, step)
            self._writer.flush()
        return self.stats

    def _measure(self):
        """`{layer: stats}` of the probe batch now; nothing stored or written."""
        # A compiled forward pass (traced once per probe model), in inference
        # mode: about half the time of an eager call.
        outputs = self._probe.predict_on_batch(self.x)
        self._calls += 1
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        measured = {}
        for (path, layer), output in zip(self._probed_layers, outputs, strict=True):
            kind = activation_kind(layer)
            named = (
                [(path, output)] if not isinstance(output, (list, tuple, dict))
                else [(f"{path}/{i}", value) for i, value in
                      enumerate(keras.tree.flatten(output))]
            )
            for name, value in named:
                # `predict_on_batch` gives NumPy arrays already: not copied
                # again (3.6 ms per probe of a small CNN on TensorFlow)
                if not isinstance(value, np.ndarray):
                    value = keras.ops.convert_to_numpy(value)
                measured[name] = activations.activation_stats(
                    value, kind, self.saturation_tolerance,
                )
        return measured

    def _select_layers(self, model):
        """`[(path, layer)]` to probe, checked against the model."""
        if not layer_paths.is_graph_model(model):
            raise ValueError(
                f"ActivationMonitor cannot probe {type(model).__name__}: it is "
                "a subclassed model, whose layers' outputs exist only inside "
                "its own `call` (it has no graph of layer outputs). Build it "
                "with keras.Input (Functional API) or Sequential (nested "
                "backbones are probed inside), or pass `model=` "
                "(TrainingDoctor: `probe_model=`) a Sequential or functional "
                "model it calls (e.g. its backbone), with `x` that model's "
                "input."
            )
        every = dict(layer_paths.walk(model))
        if self.layers == "all":
            return list(every.items())
        if self.layers is None:
            return [(path, every[path])
                    for path in layer_paths.default_paths(model)]
        missing = [name for name in self.layers if name not in every]
        if missing:
            names = sorted(every)
            if len(names) > 30:
                close = sorted({match for name in missing
                                for match in _close_paths(name, names)})
                names = (f"{len(names)} layers, e.g. "
                         f"{close or names[:30]} (layers inside a sub-model "
                         "are named '<sub-model>/<layer>')")
            raise ValueError(
                f"ActivationMonitor: `layers` lists no layer named {missing} "
                f"in the model. Layers: {names}"
            )
        return [(name, every[name]) for name in self.layers]

    def _write(self, measured, step):
        """Every layer's statistics at `step`, as one event."""
        scalars, histograms = {}, {}
        for name, stats in measured.items():
            scalars[tags.activation(name, tags.ACTIVATION_MEAN)] = stats["mean"]
            scalars[tags.activation(name, tags.ACTIVATION_STD)] = stats["std"]
            for key, statistic in (
                ("saturated_fraction", tags.SATURATED_FRACTION),
                ("dead_fraction", tags.DEAD_FRACTION),
            ):
                if stats[key] is not None:
                    scalars[tags.activation(name, statistic)] = stats[key]
            histograms[tags.activation(name, tags.ACTIVATION_HISTOGRAM)] = (
                stats["histogram"])
        self._writer.write(step, scalars, histogram_counts=histograms)

    def _warn(self, name, stats, step):
        if not self.verbose:
            return
        saturated, dead = stats["saturated_fraction"], stats["dead_fraction"]
        if saturated is not None and saturated > self.warn_fraction:
            console.print_msg(
                f"\nEpoch {step + 1}: ActivationMonitor: layer {name} is "
                f"{saturated:.0%} saturated: lower its initial weights "
                "(e.g. Glorot/He initialization) or the learning rate."
            )
        if dead is not None and dead > self.warn_fraction:
            console.print_msg(
                f"\nEpoch {step + 1}: ActivationMonitor: {dead:.0%} of the "
                f"units of layer {name} are dead (zero for every probe input): "
                "lower the learning rate, check the bias initialization, or "
                "try LeakyReLU."
            )


class _TimeBudget:
    """Whether a probe fits in `share` of the time since the previous one."""

    def __init__(self, share):
        self.share = share
        self.cost = None  # seconds of the fastest probe (traces excluded)
        self.since = time.monotonic()  # the end of the previous probe

    def allows(self):
        return (self.cost is None
                or self.share * (time.monotonic() - self.since) >= self.cost)

    def spent(self, seconds, counts=True):
        if counts:
            self.cost = seconds if self.cost is None else min(self.cost,
                                                              seconds)
        self.since = time.monotonic()
