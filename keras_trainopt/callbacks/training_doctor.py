"""`TrainingDoctor`: the four monitors in one callback, and what to do."""

import os
import warnings
from typing import Any

import keras

from keras_trainopt._internal import callback_state
from keras_trainopt._internal import console
from keras_trainopt._internal import model_facts
from keras_trainopt._internal import validation
from keras_trainopt._internal.layers import is_graph_model
from keras_trainopt.callbacks.activation_monitor import ActivationMonitor
from keras_trainopt.callbacks.loss_monitor import LossMonitor
from keras_trainopt.callbacks.overfitting_monitor import OverfittingMonitor
from keras_trainopt.callbacks.overfitting_monitor import has_validation
from keras_trainopt.callbacks.update_ratio_logger import UpdateRatioLogger
from keras_trainopt.diagnostics import advice as advice_rules
from keras_trainopt.reporting import tags
from keras_trainopt.reporting import tensorboard


class TrainingDoctor(callback_state.Restorable, keras.callbacks.Callback):
    """Watches training with all the monitors and says what to change.

    Babysitting a run means reading four things at once: the loss curve, the
    train/validation gap, the weight-update ratios and the activations
    (cs231n). This callback runs `LossMonitor`, `OverfittingMonitor`,
    `UpdateRatioLogger` and, given probe inputs, `ActivationMonitor`, with
    their TensorBoard output in `<log_dir>/monitors`, and at the end of
    training turns their findings into root causes
    (`keras_trainopt.diagnostics.advise`): one `Advice` per cause, with a
    machine-readable `finding` and the symptoms that point to it as
    `evidence`, e.g. "learning rate too high: the loss blew up to 7.6 and
    then stayed at 2.44, near or above the chance level 2.3; layer dense has
    100% dead units, alive at the start; ...; try about 0.3" rather than four
    findings about dead units, underfitting and low update ratios. Before
    the first update it also reads the model's loss and output layer, the
    probe inputs' scale and which units are dead or saturated from the
    start. The advice is printed (`verbose`), written to TensorBoard's text
    plugin (`doctor/advice`) and kept in `advice` for reports.

    Without validation data (no `validation_data` or `validation_split`) the
    train/validation gap is not checked: a warning says so at train begin,
    the other monitors go on, and the advice says that the gap was not
    checked. With `validation_freq` the gap is checked at the epochs `fit`
    validates. With a nested backbone (e.g. a
    `keras.applications` model inside the trained model), `x_probe` probes
    its activation layers too, named `"<backbone>/<layer>"` (see
    `ActivationMonitor`); a subclassed model needs `probe_model`.

    Examples:
        >>> import keras, numpy as np
        >>> from keras_trainopt import TrainingDoctor
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(256, 8)).astype("float32")
        >>> y = x @ rng.normal(size=(8, 1)).astype("float32")
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
        >>> model.compile(keras.optimizers.SGD(5.0), loss="mse")  # far too high
        >>> doctor = TrainingDoctor(metric="loss", every=1, verbose=0)
        >>> _ = model.fit(x, y, validation_split=0.25, epochs=10, verbose=0,
        ...               callbacks=[doctor])
        >>> print(doctor.advice[0])  # doctest: +ELLIPSIS
        learning rate too high: the loss diverged at step ...; try about 0.5

    Args:
        log_dir: TensorBoard folder (`None`: no files).
        x_probe: inputs for `ActivationMonitor` (`None`: activations are not
            watched).
        metric: the metric `OverfittingMonitor` compares ("accuracy" by
            default; "loss" for models without metrics).
        overfitting_gap: the train/validation gap on `metric`'s own scale
            above which the fit counts as overfitting (twice that is
            "strong").
        every: `LossMonitor` reads the loss every `every` updates.
        update_ratio_every: `UpdateRatioLogger` measures the update ratios
            every `update_ratio_every` updates.
        verbose: 1 prints the advice at train end.
        probe_model: the Sequential or functional model `x_probe` feeds, for
            `ActivationMonitor(model=...)`; `None` probes the trained model
            (a subclassed one is refused at train begin).
        probe_overhead: the largest share of the training time the
            activation probe may take (`ActivationMonitor(max_overhead=...)`,
            in (0, 1]): on epochs much shorter than a second some epochs go
            unprobed, and the last one always is; `None` probes every epoch.

    Attributes:
        advice: list of `keras_trainopt.diagnostics.Advice`, worst first;
            `advice[0].finding` names the main cause (`"healthy"` when
            nothing is wrong).
        monitors: the monitors, by name ("loss", "fit", "update_ratio",
            "activations").

    Reference: cs231n, "Neural Networks Part 3: Learning and Evaluation",
    babysitting the learning process.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike | None = None,
        x_probe: Any = None,  # an array, or a list or dict of them
        *,
        metric: str = "accuracy",
        overfitting_gap: float = 0.1,
        every: int = 10,
        update_ratio_every: int = 100,
        verbose: int = 1,
        probe_model: keras.Model | None = None,
        probe_overhead: float | None = 0.01,
    ) -> None:
        super().__init__()
        self.log_dir = validation.check_path("log_dir", log_dir, allow_none=True)
        # checked here: the monitors would name their own arguments
        validation.check_inputs("x_probe", x_probe, allow_none=True)
        validation.check_int("update_ratio_every", update_ratio_every, low=1)
        validation.check_real("probe_overhead", probe_overhead, low=0.0,
                              high=1.0, low_open=True, allow_none=True)
        self.verbose = validation.check_int("verbose", verbose, low=0)
        self.monitors = {
            "loss": LossMonitor(log_dir, every=every, verbose=0),
            "fit": OverfittingMonitor(metric, log_dir=log_dir,
                                      overfitting_gap=overfitting_gap,
                                      verbose=0),
            "update_ratio": UpdateRatioLogger(log_dir, update_ratio_every,
                                              verbose=0),
        }
        if probe_model is not None and not is_graph_model(probe_model):
            raise TypeError(
                "`probe_model` must be a Sequential or functional Keras model "
                "(the one `x_probe` feeds), or None for the model being "
                f"trained. Received: probe_model={probe_model!r}"
            )
        if x_probe is not None:
            self.monitors["activations"] = ActivationMonitor(
                x_probe, log_dir, verbose=0, model=probe_model,
                max_overhead=probe_overhead,
            )
        elif probe_model is not None:
            raise ValueError(
                "`probe_model` is the model `x_probe` feeds; pass `x_probe` "
                f"too, or leave it None. Received: probe_model={probe_model!r}"
            )
        for monitor in self.monitors.values():
            monitor._state_owner = self  # saved with the doctor's state
        # without validation data the doctor skips the gap; it does not fail
        self.monitors["fit"]._requires_validation = False
        # The one hook that runs at every step goes only to the monitors
        # that have it (the loss and the update ratios).
        self._at_batch_begin = [
            monitor for monitor in self.monitors.values()
            if type(monitor).on_train_batch_begin
            is not keras.callbacks.Callback.on_train_batch_begin
        ]
        self.advice = []
        self._model_facts = {}
        self._inputs = None
        # the units' fractions before the first update (of epoch 0)
        self._initial_activations = None
        self._epochs_done = 0
        # epochs of the current fit whose gap was checked / not (no
        # validation); None before any fit
        self._gap_checked = None
        self._gap_skipped = 0

    # -- state ---------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """Each monitor's state and the epochs seen, for a restart."""
        return {
            "epochs_done": self._epochs_done,
            "initial_activations": self._initial_activations,
            "monitors": {
                name: monitor.get_state()
                for name, monitor in self.monitors.items()
            },
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restores what `get_state` returned."""
        self._epochs_done = int(state.get("epochs_done", 0))
        if state.get("initial_activations") is not None:
            self._initial_activations = state["initial_activations"]
        for name, monitor_state in state.get("monitors", {}).items():
            if name in self.monitors:
                self.monitors[name].set_state(monitor_state)

    def get_epoch_state(self) -> dict[str, Any]:
        """Each monitor's state of the epoch in progress (mid-epoch backups)."""
        return {
            name: monitor.get_epoch_state()
            for name, monitor in self.monitors.items()
        }

    def set_epoch_state(self, state: dict[str, Any]) -> None:
        for name, monitor_state in (state or {}).items():
            if name in self.monitors:
                self.monitors[name].set_epoch_state(monitor_state)

    # -- forwarding ----------------------------------------------------------
    #
    # Straight to each monitor, not through a `keras.callbacks.CallbackList`:
    # that would hand them a copy of `logs`, and what OverfittingMonitor adds
    # to the epoch logs (`generalization_gap`) would never reach `History`
    # or Keras's TensorBoard callback.

    def _forward(self, method, *args):
        for monitor in self.monitors.values():
            getattr(monitor, method)(*args)

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        self._forward("set_model", model)

    def set_params(self, params: dict[str, Any]) -> None:
        super().set_params(params)
        self._forward("set_params", params)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.advice = []
        self._gap_checked, self._gap_skipped = 0, 0
        self._forward("on_train_begin", logs)  # the monitors' refusals first
        if self._fit_validates is False:
            self._warn_gap_not_checked("this fit has no validation data")
        # Before the first update: what the model and the data are, and
        # which units are dead or saturated from the start (the
        # initialization) rather than killed later (the rate).
        self._model_facts = model_facts.describe(self.model)
        self._inputs = None
        activations = self.monitors.get("activations")
        if activations is None:  # no probe: no activation charts can fill
            from keras_trainopt.reporting import layout

            writer = tensorboard.open_run(self.log_dir, "monitors")
            if writer is not None:
                writer.omit_charts([layout.SATURATED_CHART,
                                    layout.DEAD_CHART])
            tensorboard.close_run(writer)
        else:
            target = activations.probe_model or self.model
            if not model_facts.scales_inputs(target):
                self._inputs = model_facts.input_scale(activations.x)
            if self._initial_activations is None or self._epochs_done == 0:
                self._initial_activations = {
                    layer: {key: stats[key] for key in
                            ("saturated_fraction", "dead_fraction")}
                    for layer, stats in activations._measure().items()
                }

    def on_epoch_begin(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> None:
        self._forward("on_epoch_begin", epoch, logs)

    def on_train_batch_begin(
        self, batch: int, logs: dict[str, Any] | None = None
    ) -> None:
        for monitor in self._at_batch_begin:
            monitor.on_train_batch_begin(batch, logs)

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._forward("on_test_begin", logs)

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        self._forward("on_test_end", logs)

    def on_epoch_end(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> None:
        if has_validation(logs or {}):
            self._forward("on_epoch_end", epoch, logs)
            self._gap_checked += 1
        else:
            # No validation this epoch: every monitor but the gap's.
            for name, monitor in self.monitors.items():
                if name != "fit":
                    monitor.on_epoch_end(epoch, logs)
            if not self._fit_validates:  # not just `validation_freq`
                if (self._fit_validates is None and not self._gap_checked
                        and not self._gap_skipped):
                    # outside Keras' `fit`: the epoch logs are all there is
                    self._warn_gap_not_checked(
                        f"epoch {epoch + 1} ended without validation")
                self._gap_skipped += 1
        self._epochs_done = epoch + 1

    @property
    def _fit_validates(self):
        """Whether the current `fit` validates, as its gap monitor read it
        from `fit`'s arguments (None outside Keras' `fit`)."""
        return self.monitors["fit"]._fit_validates

    @staticmethod
    def _warn_gap_not_checked(why):
        warnings.warn(
            f"TrainingDoctor: {why}, so the train/validation gap is not "
            "checked (the other monitors go on). Pass `validation_data` or "
            "`validation_split` to `fit` to have it checked.",
            stacklevel=3,
        )

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        # Opened before the monitors give theirs back: the same writer, so
        # the run keeps one layout (the charts the monitors left out stay out).
        writer = tensorboard.open_run(self.log_dir, "monitors")
        try:
            self._forward("on_train_end", logs)
            self.advice = self.diagnose()
            if writer is not None:
                text = "\n".join(f"- **{a.severity}**: {a.message}"
                                 for a in self.advice)
                writer.text(tags.ADVICE, text, 0)
        finally:
            tensorboard.close_run(writer)
        if self.verbose:
            console.print_msg("\nTrainingDoctor:\n" + "\n".join(
                f"  - {a.message}" for a in self.advice))

    # -- the verdict ---------------------------------------------------------

    def diagnose(self) -> list[advice_rules.Advice]:
        """The advice from what the monitors have seen so far.

        When no epoch of the last `fit` had validation data (none given,
        or none of its epochs picked by `validation_freq`), the advice says
        that the gap was not checked.
        """
        loss = self.monitors["loss"]
        fit = self.monitors["fit"]
        activations = self.monitors.get("activations")
        found = advice_rules.advise(
            loss={
                "diagnosis": loss.diagnosis,
                "pattern": loss.pattern,
                "reason": loss.reason,
                "diverged_at_step": loss.diverged_at_step,
                "learning_rate": (
                    loss.learning_rates[-1] if loss.learning_rates else None
                ),
                "recent_loss": loss.recent_loss,
                "peak_loss": loss.peak_loss,
                "chance_loss": loss.chance_level,
            },
            fit={
                "diagnosis": fit.diagnosis,
                "reason": fit.reason,
                "evidence": fit.evidence,
                "gaps": list(fit.gaps),
                "best_epoch": fit.best_epoch,
                "epoch": self._epochs_done,
            },
            update_ratios=self.monitors["update_ratio"].judged_ratios,
            activations=(
                None if activations is None else dict(activations.stats)
            ),
            initial_activations=self._initial_activations,
            inputs=self._inputs,
            model=self._model_facts,
            strong_gap=2 * fit.overfitting_gap,
        )
        if self._gap_checked == 0 and (self._gap_skipped
                                       or self._fit_validates):
            healthy = any(a.topic == "overall" for a in found)
            found = [a for a in found if a.topic != "overall"]
            if healthy:
                found.append(advice_rules.Advice(
                    "overall", "ok",
                    "no other problems seen: the loss, the update ratios and "
                    "the activations look healthy", "healthy"))
            found.insert(
                sum(a.severity == "problem" for a in found),
                advice_rules.Advice(
                    "fit", "warning",
                    "the train/validation gap was not checked: " + (
                        "fit had no validation data; pass validation_data "
                        "or validation_split to fit to have it checked"
                        if self._gap_skipped else
                        "no epoch of this fit was validated (validation_freq="
                        f"{fit._validation_freq!r})"),
                    "gap_not_checked"))
        return found
