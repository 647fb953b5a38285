"""`UpdateRatioLogger`: how far one update moves each weight, relative to it."""

import collections
import math
import os
from typing import Any

import keras
import numpy as np

from keras_trainopt._internal import callback_state
from keras_trainopt._internal import console
from keras_trainopt._internal import optimizers
from keras_trainopt._internal import training
from keras_trainopt._internal import update_probe
from keras_trainopt._internal import validation
from keras_trainopt.diagnostics.update_ratio import layer_verdict
from keras_trainopt.reporting import tags
from keras_trainopt.reporting import tensorboard


def weight_key(variable):
    """`"<layer>/<weight>"` from a Keras variable path (`".../dense/kernel"`)."""
    parts = variable.path.split("/")
    return "/".join(parts[-2:]) if len(parts) > 1 else parts[0]


class UpdateRatioLogger(callback_state.Restorable, keras.callbacks.Callback):
    """Logs the weight-update-to-weight ratio of every trainable weight.

    The ratio of the size of one update to the size of the weights is the
    most direct check of the learning rate (cs231n, "Neural Networks Part 3"):
    around 1e-3 is healthy; far below, the rate is too low and training
    crawls; far above, it is too high and the weights are thrashed. Every
    `every` updates this callback measures, for each trainable weight,

        ratio = ||w_after - w_before|| / ||w_before||

    across exactly one real optimizer update, from inside the compiled train
    step (so it holds with `steps_per_execution > 1`, and skipped loss-scaled
    steps are not measured), on the TensorFlow, JAX and PyTorch backends.
    `every` counts applied updates (the optimizer's `iterations`), and every
    measured update is kept, whatever `steps_per_execution`: the step writes
    each measurement into a small buffer that the callback reads at each
    epoch's end, and in its middle only when the epoch's measurements
    would not fit in 64 rows, then at most once per 32 updates (a host read
    stalls the step pipeline). The latest values are in `ratios`, keyed
    `"<layer>/<weight>"`; with `log_dir` they go to TensorBoard as scalars
    `update_ratio/<layer>/<weight>`, with a per-layer summary: one scalar
    per layer, `update_ratio_by_layer/<layer>`, and its log10,
    `update_ratio_log10_by_layer/<layer>` (one chart with a line per layer
    in the custom-scalars tab, on a log10 scale; absent for a ratio of 0),
    and a histogram of `log10(ratio)` over
    all weights (`update_ratio/log10_all_weights`). Each layer is judged by its
    largest weight (a bias starting at zero has no meaningful ratio), and
    with `verbose` a layer outside `[low, high]` gets a warning. Only the
    layers that hold a weight matrix (a kernel or an embedding: rank 2 or
    more) are judged, here and by `TrainingDoctor`; a layer of vectors
    alone (a normalization's scale and shift, ConvNeXt's LayerScale) is
    logged but not judged: its ratio says little about the rate, and a
    scale initialized near zero (LayerScale's 1e-6) updates by 1e3 of
    itself per step at any usual rate.

    Examples:
        >>> import keras, numpy as np
        >>> from keras_trainopt import UpdateRatioLogger
        >>> model = keras.Sequential([keras.Input((8,)),
        ...                           keras.layers.Dense(4, name="dense")])
        >>> model.compile(keras.optimizers.SGD(0.01), "mse")
        >>> logger = UpdateRatioLogger(None, every=1, verbose=0)
        >>> x = np.random.default_rng(0).normal(size=(32, 8))
        >>> _ = model.fit(x, x[:, :4], epochs=1, callbacks=[logger], verbose=0)
        >>> sorted(logger.ratios)
        ['dense/bias', 'dense/kernel']
        >>> 1e-5 < logger.ratios["dense/kernel"] < 1e-1
        True

    Args:
        log_dir: TensorBoard folder (the run `monitors`, x axis the
            optimizer's step count after the measured update); `None` writes
            nothing.
        every: measure the updates whose index is a multiple of `every`
            (int >= 1). Each measurement copies the weights once inside the
            step; on the benchmark MLPs 100 costs a few percent at most, 1
            about 1.04x (JAX) to 1.25x (PyTorch). On JAX and TensorFlow the
            executions with no measured update run a train function traced
            without the probe (the step is compiled twice), except with
            loss scaling, where the probe's branch is in every step. Under
            a `tf.distribute` strategy the copy happens at every update
            (the update, which synchronizes the replicas, cannot sit in a
            branch), whatever `every`.
        low, high: the healthy band for a layer (default 1e-4 and 1e-2, a
            decade either side of 1e-3).
        verbose: 1 prints a warning for each layer outside the band, at the
            end of each epoch.

    Attributes (current at each epoch's end; during an epoch, as of the
    last read):
        ratios: `{"<layer>/<weight>": ratio}` of the latest measurement.
        layer_ratios: `{layer: ratio of its largest weight}`.
        judged_ratios: `layer_ratios` of the layers that hold a weight
            matrix, the ones judged against `[low, high]`.
        unjudged_layers: the layers of vectors alone (not judged).
        step: the optimizer step count after the measured update.
        history: `{key: [(step, ratio), ...]}` of all measurements.

    Reference: cs231n, "Neural Networks Part 3: Learning and Evaluation",
    ratio of weights:updates.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike | None = None,
        every: int = 100,
        *,
        low: float = 1e-4,
        high: float = 1e-2,
        verbose: int = 1,
    ) -> None:
        super().__init__()
        self.log_dir = validation.check_path("log_dir", log_dir, allow_none=True)
        self.every = validation.check_int("every", every, low=1)
        self.low = validation.check_real("low", low, low=0.0, low_open=True)
        self.high = validation.check_real("high", high, low=0.0, low_open=True)
        if self.low >= self.high:
            raise ValueError(
                "`low` must be < `high`. "
                f"Received: low={self.low:g}, high={self.high:g}"
            )
        self.verbose = validation.check_int("verbose", verbose, low=0)
        self.ratios = {}
        self.layer_ratios = {}
        self.unjudged_layers = []
        self.step = None
        self.history = collections.defaultdict(list)
        self._probe = None
        self._writer = None
        self._pending = []
        self._count_due = False  # read the update count before the next step
        self._first_update = 0  # the update count at batch 0 (counted on the host)

    def get_state(self) -> dict[str, Any]:
        """The latest ratios and their history, for a restart."""
        return {
            "step": self.step,
            "ratios": dict(self.ratios),
            "layer_ratios": dict(self.layer_ratios),
            "unjudged_layers": list(self.unjudged_layers),
            "history": {key: list(rows) for key, rows in self.history.items()},
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restores what `get_state` returned."""
        self.step = state.get("step")
        self.ratios = dict(state.get("ratios", {}))
        self.layer_ratios = dict(state.get("layer_ratios", {}))
        self.unjudged_layers = list(state.get("unjudged_layers", []))
        self.history = collections.defaultdict(list)
        for key, rows in state.get("history", {}).items():
            self.history[key] = [(int(step), value) for step, value in rows]

    def get_epoch_state(self) -> dict[str, Any]:
        """Where the epoch's readings stand (mid-epoch backups)."""
        if self._probe is None or not hasattr(self, "_steps_at_read"):
            return {}
        return {
            "applied_at_read": self._applied_at_read,
            "steps_at_read": self._steps_at_read,
            "pending": [[step, values] for step, values in self._pending],
            "probe": self._probe.get_state(),
        }

    def set_epoch_state(self, state: dict[str, Any]) -> None:
        if not state or self._probe is None:
            return
        self._applied_at_read = int(state["applied_at_read"])
        self._steps_at_read = int(state["steps_at_read"])
        self._pending = [
            (int(step), np.asarray(values)) for step, values in state["pending"]
        ]
        self._probe.set_state(state["probe"])

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        validation.check_one_optimizer(
            self.model, "UpdateRatioLogger", "measures the updates of",
            "`ratios` stays empty",
            "Measure a model whose `train_step` applies one optimizer, "
            "`model.optimizer`, to all the trainable weights, or leave "
            "UpdateRatioLogger (and TrainingDoctor, which runs it) out of "
            "this fit.",
        )
        optimizers.warn_other_optimizers(
            self.model, "UpdateRatioLogger",
            "It measures the updates of `model.optimizer` only, so "
            "`ratios` stays empty.",
        )
        validation.check_built(
            self.model, "UpdateRatioLogger", "measures the updates of the "
            "model's weights",
        )
        spe = int(getattr(self.model, "steps_per_execution", 1) or 1)
        span = update_probe.read_span((self.params or {}).get("steps"),
                                      self.every)
        if self._probe is not None and (
            self._probe.model is not self.model
            or self._probe.steps_per_execution != spe
            or self._probe.read_span != span
            # layers frozen or unfrozen since: measure the weights trained now
            or [id(v) for v in self._probe.variables]
            != [id(v) for v in self.model.trainable_variables]
        ):
            self._probe.uninstall()
            self._probe = None
        if self._probe is None:
            # Kept across `fit` calls: its hook is then the same, and the
            # train function traced with it is reused.
            self._probe = update_probe.UpdateProbe(
                self.model, self.every, spe, read_span=span)
        self._keys = [weight_key(v) for v in self._probe.variables]
        self._largest = {}
        with_matrix = set()
        for key, variable in zip(self._keys, self._probe.variables, strict=True):
            layer = key.rsplit("/", 1)[0]
            size = int(np.prod(variable.shape))
            if size > self._largest.get(layer, ("", -1))[1]:
                self._largest[layer] = (key, size)
            if len(variable.shape) >= 2:
                with_matrix.add(layer)
        self.unjudged_layers = [
            layer for layer in self._largest if layer not in with_matrix]
        self._probe.install(fit=self.params)
        self._writer = tensorboard.open_run(self.log_dir, "monitors")

    def on_epoch_begin(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> None:
        self._applied_at_read = optimizers.get_iterations(self.model.optimizer)
        self._steps_at_read = 0
        # after every epoch-begin hook (a mid-epoch resume restores the
        # optimizer's count in one), before the first update
        self._count_due = self._probe.counts_on_host or self._probe.switches

    def on_train_batch_begin(
        self, batch: int, logs: dict[str, Any] | None = None
    ) -> None:
        # Before an execution, of the `batch` steps run before it; not in
        # `on_train_batch_end`, which would make Keras (JAX, PyTorch)
        # dispatch every callback synchronously. The epoch's last steps are
        # read at its end. The updates [a, a + ran) may have run since the
        # last read (fewer if loss scaling skipped some): predicted without
        # a device read, which happens only when the probe says so.
        if self._count_due:
            self._count_due = False
            model = training.unsynced_model(self)
            applies = training.applied_calls(model)
            self._probe.count_from(applies)
            applied = optimizers.updates_from_applies(model.optimizer, applies)
            self._first_update = applied - batch  # the update of batch 0
            if self._probe.switches:
                self._probe.prepare()
        if self._probe.switches:
            self._probe.arm(self._first_update + batch,
                            self._probe.steps_per_execution)
        steps = batch
        ran = steps - self._steps_at_read
        a = self._applied_at_read
        measured = ran > 0 and (a + ran - 1) // self.every * self.every >= a
        if self._probe.read_due(ran, measured):
            self._collect()
            self._applied_at_read = training.applied_updates(
                training.unsynced_model(self)
            )
            self._steps_at_read = steps

    def on_epoch_end(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> None:
        self._collect()
        self._flush()
        if self.verbose:
            self._warn(epoch)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._probe.uninstall()
        self._flush()
        tensorboard.close_run(self._writer)
        self._writer = None

    def _collect(self):
        for step, values in self._probe.read():
            self.step = step
            self.ratios = dict(zip(self._keys, values.tolist(), strict=True))
            self.layer_ratios = {
                layer: self.ratios[key]
                for layer, (key, _) in self._largest.items()
            }
            for key, value in self.ratios.items():
                self.history[key].append((step, value))
            self._pending.append((step, values))

    def _flush(self):
        if self._writer is not None:
            for step, values in self._pending:
                by_key = dict(zip(self._keys, values, strict=True))
                scalars = {
                    tags.update_ratio(key): value for key, value in by_key.items()
                }
                for layer, (key, _) in self._largest.items():
                    scalars[tags.update_ratio_by_layer(layer)] = by_key[key]
                    if np.isfinite(by_key[key]) and by_key[key] > 0:
                        scalars[tags.update_ratio_log10_by_layer(layer)] = (
                            float(np.log10(by_key[key])))
                finite = values[np.isfinite(values) & (values > 0)]
                histograms = (
                    {tags.UPDATE_RATIO_LOG10_ALL: np.log10(finite)}
                    if finite.size
                    else {}
                )
                self._writer.write(step, scalars, histograms)
            self._writer.flush()
        self._pending = []

    @property
    def judged_ratios(self) -> dict[str, float]:
        """`layer_ratios` of the layers judged: those with a weight matrix."""
        unjudged = set(self.unjudged_layers)
        return {layer: ratio for layer, ratio in self.layer_ratios.items()
                if layer not in unjudged}

    def _warn(self, epoch):
        for layer, ratio in self.judged_ratios.items():
            verdict = layer_verdict(ratio, self.low, self.high)
            if verdict == "healthy":
                continue
            direction = "raise" if verdict == "too_low" else "lower"
            shown = f"{ratio:.2g}" if math.isfinite(ratio) else str(ratio)
            console.print_msg(
                f"\nEpoch {epoch + 1}: UpdateRatioLogger: layer {layer} "
                f"updates by {shown} of its weights per step, outside "
                f"[{self.low:g}, {self.high:g}] (healthy ~1e-3): {direction} "
                "the learning rate."
            )
