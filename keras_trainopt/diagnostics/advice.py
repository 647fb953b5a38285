"""Turning the monitors' findings into root causes and concrete advice.

The monitors see symptoms; one cause shows several of them. A learning rate
far too high makes the loss blow up, kills ReLUs (whose update ratio is then
exactly 0, because no gradient reaches them) and leaves the training
accuracy at chance, which a gap check alone would call underfitting.
`advise` therefore works in three steps:

1. *candidates*: each rule below reads its evidence and proposes one
   finding from `FINDINGS` (the vocabulary), with the evidence it saw;
2. *resolution*: the candidates are taken in the order of `FINDINGS` (root
   causes first). A candidate that a kept finding explains (`EXPLAINS`)
   joins that finding as more evidence; one that contradicts a kept finding
   (`CONTRADICTIONS`) is dropped; any other is kept. So two findings of one
   list never contradict each other, whatever the evidence;
3. *order*: problems first, then warnings, each in the order of `FINDINGS`.
"""

import dataclasses
import math
import numbers

from keras_trainopt._internal import validation

SEVERITIES = ("problem", "warning", "ok")
# The defaults of `advise`, named for the report's charts to draw the same
# lines: the healthy band of update ratios (around cs231n's ~1e-3) and the
# fractions of saturated or dead units above which a layer is reported.
RATIO_BAND = (1e-4, 1e-2)
SATURATION_THRESHOLD = 0.5
DEAD_THRESHOLD = 0.5
# Inputs whose root mean square exceeds this are far from cs231n's
# zero-mean, unit-variance preprocessing (e.g. pixels in 0-255).
INPUT_SCALE = 10.0
# Early layers whose update ratio is below this fraction of the last
# layer's learn that much slower: the gradient vanishes on its way back.
VANISHING_FACTOR = 1e-2

# The vocabulary of `Advice.finding`, root causes first: the order in which
# candidates are resolved, and the order of findings of one severity.
FINDINGS = {
    "loss_output_mismatch": "the output layer and the loss disagree "
    "(probabilities into a loss that expects logits, or the reverse)",
    "unnormalized_inputs": "the inputs are far from zero mean and unit "
    "scale",
    "non_finite_loss": "the loss, or the weights, turned NaN or inf "
    "without the loss rising first (bad values in the data or in the loss)",
    "learning_rate_too_high": "the learning rate is too high",
    "saturated_units": "tanh/sigmoid units sit at their asymptotes",
    "dead_units": "ReLU units output zero for every input",
    "vanishing_gradients": "early layers get far smaller updates than late "
    "ones",
    "no_gradient": "a layer's weights do not move at all",
    "learning_rate_too_low": "the learning rate is too low",
    "overfitting": "validation falls behind training",
    "underfitting": "training itself is poor, and validation tracks it",
    "gap_not_checked": "the train/validation gap was not checked",
    "healthy": "no problem seen",
}
# cause -> the findings it explains: their evidence joins the cause.
EXPLAINS = {
    "loss_output_mismatch": frozenset({
        "learning_rate_too_high", "learning_rate_too_low", "no_gradient",
        "underfitting"}),
    "unnormalized_inputs": frozenset({
        "non_finite_loss", "learning_rate_too_high", "saturated_units",
        "dead_units", "vanishing_gradients", "no_gradient",
        "learning_rate_too_low", "underfitting"}),
    # NaN weights also read as dead or saturated units
    "non_finite_loss": frozenset({
        "saturated_units", "dead_units", "learning_rate_too_low",
        "no_gradient", "overfitting", "underfitting"}),
    # a rate too high kills ReLUs, saturates units, and stalls the loss
    "learning_rate_too_high": frozenset({
        "saturated_units", "dead_units", "no_gradient",
        "learning_rate_too_low", "underfitting"}),
    "saturated_units": frozenset({
        "vanishing_gradients", "no_gradient", "learning_rate_too_low",
        "underfitting"}),
    "dead_units": frozenset({
        "vanishing_gradients", "no_gradient", "learning_rate_too_low",
        "underfitting"}),
    "vanishing_gradients": frozenset({"learning_rate_too_low",
                                      "underfitting"}),
    "no_gradient": frozenset({"learning_rate_too_low", "underfitting"}),
    "learning_rate_too_low": frozenset({"underfitting"}),
}
# Pairs of findings that cannot both be true of one run.
CONTRADICTIONS = frozenset({
    frozenset({"learning_rate_too_high", "learning_rate_too_low"}),
    frozenset({"overfitting", "underfitting"}),
})
_TOPICS = {
    "loss_output_mismatch": "model", "unnormalized_inputs": "inputs",
    "non_finite_loss": "loss", "learning_rate_too_high": "learning_rate",
    "learning_rate_too_low": "learning_rate",
    "saturated_units": "activations", "dead_units": "activations",
    "vanishing_gradients": "update_ratio", "no_gradient": "update_ratio",
    "overfitting": "fit", "underfitting": "fit", "gap_not_checked": "fit",
    "healthy": "overall",
}


@dataclasses.dataclass(frozen=True)
class Advice:
    """One finding, the evidence for it, and what to do about it.

    `advise()` returns a list of them, worst first; `str(advice)` is the
    message.

    >>> from keras_trainopt.diagnostics import Advice
    >>> advice = Advice("fit", "warning", "overfitting: add L2 or dropout",
    ...                 finding="overfitting")
    >>> print(advice)
    overfitting: add L2 or dropout
    >>> advice.finding
    'overfitting'

    Args:
        topic: what it is about: "learning_rate", "fit", "update_ratio",
            "activations", "loss", "inputs", "model" or "overall".
        severity: one of `SEVERITIES` ("problem", "warning", "ok").
        message: what was seen and what to do, in one sentence.
        finding: the machine-readable cause, a key of `FINDINGS` (e.g.
            "learning_rate_too_high", "healthy"); "" when not given.
        evidence: the symptoms that point to it, one phrase each.

    Reference: cs231n, "Neural Networks Part 3: Learning and Evaluation",
    babysitting the learning process.
    """

    topic: str
    severity: str
    message: str
    finding: str = ""
    evidence: tuple = ()

    def __str__(self):
        return self.message


def contradictions(found):
    """The contradictory pairs of findings in an advice list (none, by design).

    >>> from keras_trainopt.diagnostics.advice import contradictions
    >>> contradictions([Advice("fit", "problem", "...", "overfitting"),
    ...                 Advice("fit", "warning", "...", "underfitting")])
    [('overfitting', 'underfitting')]

    Args:
        found: a list of `Advice`.
    """
    names = [a.finding for a in found]
    return [tuple(sorted(pair)) for pair in sorted(CONTRADICTIONS, key=sorted)
            if pair <= set(names)]


def advise(
    *,
    loss=None,
    fit=None,
    update_ratios=None,
    activations=None,
    initial_activations=None,
    inputs=None,
    model=None,
    ratio_band=RATIO_BAND,
    saturation_threshold=SATURATION_THRESHOLD,
    dead_threshold=DEAD_THRESHOLD,
    strong_gap=0.2,
    input_scale=INPUT_SCALE,
    vanishing_factor=VANISHING_FACTOR,
):
    """The root causes behind the monitors' findings, as a list of `Advice`.

    Each input is optional (a monitor that did not run is skipped):

    - `loss`: from `LossMonitor`: `{"diagnosis", "reason",
      "diverged_at_step", "learning_rate"}` (`learning_rate`: the rate when
      it diverged, or the last one), and where known `"pattern"`
      (`LossMonitor.PATTERNS`), `"recent_loss"` (the mean raw loss of the
      last readings), `"peak_loss"` and `"chance_loss"` (ln(classes) for a
      classification cross-entropy);
    - `fit`: from `OverfittingMonitor`: `{"diagnosis", "reason", "gaps",
      "best_epoch", "epoch"}` (`gaps` per epoch, `best_epoch` 0-based or
      None, `epoch` the 1-based number of the last epoch, default
      `len(gaps)`), and where known `"evidence"` (a phrase);
    - `update_ratios`: `{layer: ratio}` from `UpdateRatioLogger`, in the
      model's order (input side first);
    - `activations`, `initial_activations`: `{layer: {"saturated_fraction",
      "dead_fraction"}}` from `ActivationMonitor`, now and before the first
      update (units dead from the start point at the initialization; units
      that died during training, at the rate);
    - `inputs`: `{"rms": ..., "non_finite": ...}`, the root mean square and
      the count of NaN/inf of the (probe) inputs as the model sees them;
    - `model`: `{"output_activation", "loss", "from_logits",
      "output_layer"}` (see the rules).

    The rules (cs231n, "Babysitting the learning process"), each proposing
    one finding with its evidence:

    - `loss_output_mismatch`: a softmax or sigmoid output with a loss built
      with `from_logits=True`, or a linear output with a cross-entropy that
      expects probabilities;
    - `unnormalized_inputs`: inputs with a root mean square above
      `input_scale` (or holding NaN);
    - `non_finite_loss`: the loss turned NaN or inf with no rise before,
      or an update ratio is not finite (the weights turned NaN or inf)
      while the loss, observed, never rose;
    - `learning_rate_too_high`: the loss diverged, blew up and then stayed
      near or above the chance level, oscillates, or fell and rose back (a
      rebound); an update ratio not finite (with no loss curve, or one that
      rose) or above 10x the band; ReLU units that died, or tanh/sigmoid
      units that saturated, during training (an update ratio of exactly 0
      and a stalled loss are then more evidence);
    - `saturated_units`, `dead_units`: a layer (not the output) with at
      least `saturation_threshold` / `dead_threshold` of its units so;
    - `vanishing_gradients`: three or more layers measured, and the first
      one's update ratio below `vanishing_factor` times the last one's;
    - `no_gradient`: an update ratio of exactly 0: no gradient reaches the
      layer. Never read as a rate too low;
    - `learning_rate_too_low`: a flat or slow, linear loss (unless every
      non-zero update ratio is inside or above the band: the weights move
      at a healthy pace, so the rate is not what holds the loss back), or
      every non-zero update ratio below the band;
    - `overfitting`, `underfitting`: `OverfittingMonitor`'s verdict.

    Then the resolution of the module's docstring: causes first (the order
    of `FINDINGS`); what a kept cause explains (`EXPLAINS`) joins it as
    evidence; what contradicts it (`CONTRADICTIONS`) is dropped. A list with
    no problem or warning is one `healthy` advice.

    >>> from keras_trainopt.diagnostics import advise
    >>> found = advise(
    ...     loss={"diagnosis": "learning_rate_too_high", "reason": "...",
    ...           "pattern": "blow_up", "learning_rate": 3.0,
    ...           "peak_loss": 6.6, "recent_loss": 2.44, "chance_loss": 2.303},
    ...     fit={"diagnosis": "underfitting", "reason": "...", "gaps": [0.0]},
    ...     update_ratios={"dense": 0.0, "dense_1": 0.0},
    ...     activations={"dense": {"dead_fraction": 1.0}},
    ...     initial_activations={"dense": {"dead_fraction": 0.1}})
    >>> [a.finding for a in found]
    ['learning_rate_too_high']
    >>> print(found[0])  # doctest: +NORMALIZE_WHITESPACE
    learning rate too high: the loss blew up to 6.6 and then stayed at
    2.44, near or above the chance level 2.3; layer dense has 100% dead
    units, alive at the start; no gradient reaches layers dense, dense_1
    (update ratio 0); training is poor and validation tracks it; try about
    0.3

    Args:
        loss, fit, update_ratios, activations, initial_activations, inputs,
            model: the evidence, as above.
        ratio_band: the healthy range of update ratios.
        saturation_threshold, dead_threshold: fractions of saturated or
            dead units above which a layer is reported.
        strong_gap: an overfitting gap above this is called "strong".
        input_scale: the inputs' root mean square above which they count
            as unnormalized.
        vanishing_factor: the first layer's update ratio below this
            fraction of the last one's counts as a vanishing gradient.

    Reference: cs231n, "Neural Networks Part 3: Learning and Evaluation"
    (babysitting the learning process) and "Part 2" (data preprocessing,
    weight initialization); Glorot & Bengio (2010), "Understanding the
    difficulty of training deep feedforward neural networks" (saturation
    and vanishing gradients in deep sigmoid networks).
    """
    loss = validation.check_mapping("loss", loss, allow_none=True)
    fit = validation.check_mapping("fit", fit, allow_none=True)
    update_ratios = validation.check_mapping("update_ratios", update_ratios,
                                             allow_none=True)
    activations = validation.check_mapping("activations", activations,
                                           allow_none=True)
    initial_activations = validation.check_mapping(
        "initial_activations", initial_activations, allow_none=True)
    inputs = validation.check_mapping("inputs", inputs, allow_none=True)
    model = validation.check_mapping("model", model, allow_none=True)
    ratio_band = _check_band(ratio_band)
    saturation_threshold = validation.check_real(
        "saturation_threshold", saturation_threshold, low=0.0, high=1.0)
    dead_threshold = validation.check_real("dead_threshold", dead_threshold,
                                           low=0.0, high=1.0)
    strong_gap = validation.check_real("strong_gap", strong_gap, low=0.0)
    input_scale = validation.check_real("input_scale", input_scale, low=0.0,
                                        low_open=True)
    vanishing_factor = validation.check_real(
        "vanishing_factor", vanishing_factor, low=0.0, high=1.0,
        low_open=True)
    evidence = _Evidence(
        loss or {}, fit or {}, _finite_ratios(update_ratios),
        _units(activations, initial_activations, model or {},
               saturation_threshold, dead_threshold),
        ratio_band,
    )
    candidates = [
        *_mismatch(model or {}),
        *_inputs(inputs or {}, input_scale),
        *_non_finite(evidence),
        *_rate_too_high(evidence),
        *_units_findings(evidence),
        *_vanishing(evidence, vanishing_factor),
        *_no_gradient(evidence),
        *_rate_too_low(evidence),
        *_fit(evidence.fit, strong_gap),
    ]
    return _resolve(candidates)


def _check_band(band):
    if not isinstance(band, (tuple, list)) or len(band) != 2:
        raise TypeError(
            "`ratio_band` must be a pair (low, high). "
            f"Received: ratio_band={band!r}"
        )
    low = validation.check_real("ratio_band[0]", band[0], low=0.0)
    high = validation.check_real("ratio_band[1]", band[1], low=0.0)
    if not low < high:
        raise ValueError(
            "`ratio_band` must be (low, high) with low < high. "
            f"Received: ratio_band={tuple(band)!r}"
        )
    return (low, high)


# -- the evidence ----------------------------------------------------------------


@dataclasses.dataclass
class _Candidate:
    finding: str
    severity: str
    evidence: list
    action: str = ""
    title: str = ""


@dataclasses.dataclass
class _Evidence:
    loss: dict
    fit: dict
    ratios: dict  # layer -> ratio (None dropped)
    units: dict  # "dead"/"saturated" -> [(layer, now, at start or None)]
    band: tuple

    @property
    def rate(self):
        rate = self.loss.get("learning_rate")
        return rate if _is_number(rate) and rate > 0 else None

    @property
    def pattern(self):
        """The loss curve's pattern; from the verdict when not given."""
        pattern = self.loss.get("pattern")
        if pattern:
            return pattern
        diagnosis = self.loss.get("diagnosis")
        if diagnosis == "learning_rate_too_high":
            return ("diverged" if self.loss.get("diverged_at_step") is not None
                    else "oscillating")
        if diagnosis == "learning_rate_too_low":
            return "slow"
        return diagnosis or ""

    def zero_ratio_layers(self):
        return [layer for layer, r in self.ratios.items() if r == 0.0]

    def positive_ratios(self):
        return [(layer, r) for layer, r in self.ratios.items()
                if math.isfinite(r) and r > 0.0]


def _is_number(value):
    """A real number (NumPy's too), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _finite_ratios(ratios):
    """`{layer: float ratio}`, the layers without a number left out."""
    return {layer: float(r) for layer, r in (ratios or {}).items()
            if _is_number(r)}


def _units(activations, initial, model, saturation_threshold, dead_threshold):
    """Layers over the thresholds, with their fraction at the start."""
    output = model.get("output_layer")
    found = {"dead": [], "saturated": []}
    for layer, stats in (activations or {}).items():
        if not isinstance(stats, dict) or layer == output:
            continue
        start = (initial or {}).get(layer)
        start = start if isinstance(start, dict) else {}
        for kind, key, threshold in (
            ("dead", "dead_fraction", dead_threshold),
            ("saturated", "saturated_fraction", saturation_threshold),
        ):
            value = stats.get(key)
            if _is_number(value) and value >= threshold:
                before = start.get(key)
                found[kind].append(
                    (layer, value, before if _is_number(before) else None))
    return found


def _fmt(value):
    return f"{value:.3g}"


def _layers(names):
    return ("layer " if len(names) == 1 else "layers ") + ", ".join(names)


# -- the rules: one candidate finding each -----------------------------------------


def _mismatch(model):
    activation = model.get("output_activation")
    from_logits = model.get("from_logits")
    loss = model.get("loss") or "the loss"
    if from_logits is True and activation in ("softmax", "sigmoid"):
        return [_Candidate(
            "loss_output_mismatch", "problem",
            [f"the output layer applies {activation}, yet {loss} has "
             "from_logits=True and applies it again"],
            f"drop the output's {activation} or set from_logits=False")]
    if from_logits is False and activation == "linear" and "crossentropy" in (
            loss.replace("_", "").lower()):
        return [_Candidate(
            "loss_output_mismatch", "problem",
            [f"the output layer is linear (logits), yet {loss} has "
             "from_logits=False and reads them as probabilities"],
            "set from_logits=True, or end the model with softmax "
            "(sigmoid for a binary output)")]
    return []


def _inputs(inputs, input_scale):
    rms, bad = inputs.get("rms"), inputs.get("non_finite")
    if _is_number(bad) and bad > 0:
        return [_Candidate(
            "non_finite_loss", "problem",
            [f"the probe inputs hold {int(bad)} NaN or inf values"],
            "clean the data (NaN/inf in the inputs), then train again")]
    if _is_number(rms) and rms > input_scale:
        return [_Candidate(
            "unnormalized_inputs", "warning",
            [f"the inputs' root mean square is {_fmt(rms)} (about 1 after "
             "standardization)"],
            "standardize the inputs (subtract the mean, divide by the "
            "standard deviation) or scale them to [0, 1], e.g. with a "
            "Rescaling or Normalization layer")]
    return []


# Loss patterns that show a rise: what a learning rate too high does first.
_RISES = frozenset({"diverged", "blow_up", "oscillating", "rebound"})


def _weights_turned_non_finite(e):
    """Layers whose update ratio is not finite while the loss, observed,
    never rose: the NaN or inf came from the data, not from an overflow.

    (A NaN input can leave the loss finite: where a ReLU maps NaN to 0, the
    poisoned weights silence their units and the loss sits at chance.)"""
    if not e.pattern or e.pattern in _RISES or e.pattern == "non_finite":
        return []
    return [layer for layer, r in e.ratios.items() if not math.isfinite(r)]


def _non_finite(e):
    wild = _weights_turned_non_finite(e)
    if wild:
        return [_Candidate(
            "non_finite_loss", "problem",
            [f"the weights of {_layers(wild)} turned NaN or inf (the update "
             f"ratio is not finite) while the loss never rose "
             f"({e.pattern})"],
            "look for NaN or inf in the inputs and labels and for a log or "
            "division by zero in the loss")]
    if e.pattern != "non_finite":
        return []
    step = e.loss.get("diverged_at_step")
    when = f" at step {step}" if step is not None else ""
    return [_Candidate(
        "non_finite_loss", "problem",
        [f"the loss became NaN or inf{when} without rising before"],
        "look for NaN or inf in the inputs and labels and for a log or "
        "division by zero in the loss; if the data are clean, lower the "
        "learning rate or clip the gradients (clipnorm)")]


def _loss_level(e):
    recent, chance = e.loss.get("recent_loss"), e.loss.get("chance_loss")
    if _is_number(recent) and _is_number(chance):
        return f"{_fmt(recent)}, near or above the chance level {_fmt(chance)}"
    return _fmt(recent) if _is_number(recent) else "a high value"


def _rate_too_high(e):
    if _weights_turned_non_finite(e):
        return []  # bad values, not a rate: they explain the rest too
    found, triggered = [], False
    pattern, step = e.pattern, e.loss.get("diverged_at_step")
    if pattern == "diverged":
        found.append(f"the loss diverged at step {step}" if step is not None
                     else "the loss diverged")
        triggered = True
    elif pattern == "blow_up":
        peak = e.loss.get("peak_loss")
        peak = f" to {_fmt(peak)}" if _is_number(peak) else ""
        found.append(f"the loss blew up{peak} and then stayed at "
                     f"{_loss_level(e)}")
        triggered = True
    elif pattern == "oscillating":
        found.append("the loss oscillates without going down")
        triggered = True
    elif pattern == "rebound":
        recent = e.loss.get("recent_loss")
        back = f" to {_fmt(recent)}" if _is_number(recent) else ""
        found.append(f"the loss fell and then rose back{back}")
        triggered = True
    low, high = e.band
    wild = [layer for layer, r in e.ratios.items() if not math.isfinite(r)]
    if wild and pattern != "non_finite":  # a NaN loss makes NaN weights
        found.append(f"the update ratio of {_layers(wild)} is not finite "
                     "(the weights overflowed)")
        triggered = True
    huge = [(layer, r) for layer, r in e.positive_ratios() if r > 10 * high]
    if huge:
        found.append(", ".join(f"{layer}'s update ratio is {r:.1e}"
                               for layer, r in huge))
        triggered = True
    killed = [(layer, now) for layer, now, start in e.units["dead"]
              if start is not None and start < now / 2]
    if killed:
        found += [f"layer {layer} has {now:.0%} dead units, alive at the "
                  "start" for layer, now in killed]
        triggered = True
    if not triggered:
        return []
    high_ratios = [(layer, r) for layer, r in e.positive_ratios()
                   if high < r <= 10 * high]
    if high_ratios:
        found.append(", ".join(f"{layer}'s update ratio is {r:.1e}"
                               for layer, r in high_ratios))
    scale = (3 if pattern in ("oscillating", "rebound") and len(found) == 1
             else 10)
    rate = e.rate
    action = (f"try about {rate / scale:.2g}" if rate else
              "lower it, e.g. by 10x")
    return [_Candidate("learning_rate_too_high", "problem", found, action)]


def _units_findings(e):
    found = []
    for kind, finding, action in (
        ("saturated", "saturated_units",
         "lower its initial weights (e.g. Glorot or He initialization) or "
         "normalize its inputs"),
        ("dead", "dead_units",
         "check its initialization (He, a zero or small positive bias) and "
         "the learning rate, or use a leaky ReLU"),
    ):
        for layer, now, start in e.units[kind]:
            how = (f"{now:.0%} saturated" if kind == "saturated"
                   else f"{now:.0%} dead units")
            when = ""
            if start is not None:
                when = (", from the start" if start >= now / 2
                        else ", alive at the start" if kind == "dead"
                        else ", not at the start")
            verb = "is" if kind == "saturated" else "has"
            found.append(_Candidate(
                finding, "problem", [f"layer {layer} {verb} {how}{when}"],
                action))
    return found


def _vanishing(e, factor):
    positive = e.positive_ratios()
    if len(positive) < 3:
        return []
    (first, r_first), (last, r_last) = positive[0], positive[-1]
    if r_first >= factor * r_last:
        return []
    return [_Candidate(
        "vanishing_gradients", "problem",
        [f"layer {first}'s update ratio ({r_first:.1e}) is "
         f"{r_last / r_first:.0f}x below layer {last}'s ({r_last:.1e})"],
        "use ReLU-like activations with He initialization, BatchNorm, "
        "residual connections, or a shallower network")]


def _no_gradient(e):
    zero = e.zero_ratio_layers()
    if not zero:
        return []
    return [_Candidate(
        "no_gradient", "problem",
        [f"no gradient reaches {_layers(zero)} (update ratio 0)"],
        "look for dead units, a stop_gradient, or a layer cut off from the "
        "loss")]


def _rate_too_low(e):
    found = []
    low, _ = e.band
    positive = e.positive_ratios()
    # The update ratio is the direct check of the rate: weights that move at
    # a healthy pace while the loss does not are no sign of a rate too low
    # (the model cannot use the updates: see the fit, the units).
    rate_moves_weights = positive and all(r >= low for _, r in positive)
    if e.pattern in ("flat", "slow") and not rate_moves_weights:
        reason = e.loss.get("reason") or ""
        found.append(reason.split(":")[0] or "the loss falls slowly")
    if positive and all(r < low for _, r in positive):
        listed = ", ".join(f"{layer} {r:.1e}" for layer, r in positive)
        found.append(f"every update ratio is below {low:.0e} ({listed})")
    if not found:
        return []
    rate = e.rate
    action = f"try about {rate * 3:.2g}" if rate else "raise it"
    return [_Candidate("learning_rate_too_low", "warning", found, action)]


def _fit(fit, strong_gap):
    diagnosis = fit.get("diagnosis")
    gaps = [g for g in (fit.get("gaps") or []) if _is_number(g)]
    if gaps and not math.isfinite(gaps[-1]):
        return []  # a diverged loss, reported as such
    if diagnosis == "overfitting" and gaps:
        epoch = fit.get("epoch") or len(gaps)
        best = fit.get("best_epoch")
        stop = f", or stop at epoch {best + 1}" if best is not None else ""
        said = [f"gap {gaps[-1]:.2f} at epoch {epoch}"]
        if fit.get("evidence"):
            said.append(fit["evidence"])
        return [_Candidate(
            "overfitting", "problem", said,
            f"add L2 or dropout, or get more data{stop}",
            title="strong overfitting" if gaps[-1] > strong_gap
            else "overfitting")]
    if diagnosis == "underfitting":
        return [_Candidate(
            "underfitting", "warning",
            [fit.get("evidence") or "training is poor and validation "
             "tracks it"],
            "use a bigger model, train longer, or regularize less")]
    return []


# -- the resolution --------------------------------------------------------------

_ORDER = {name: i for i, name in enumerate(FINDINGS)}
_RANK = {s: i for i, s in enumerate(SEVERITIES)}


def _resolve(candidates):
    """Causes first; explained findings join their cause; contradicted ones go."""
    kept = []
    for candidate in sorted(candidates, key=lambda c: _ORDER[c.finding]):
        same = next((k for k in kept if k.finding == candidate.finding), None)
        host = same or next(
            (k for k in kept
             if candidate.finding in EXPLAINS.get(k.finding, ())), None)
        if host is not None:
            host.evidence += [x for x in candidate.evidence
                              if x not in host.evidence]
            if _RANK[candidate.severity] < _RANK[host.severity]:
                host.severity = candidate.severity
            continue
        if any(frozenset({candidate.finding, k.finding}) in CONTRADICTIONS
               for k in kept):
            continue
        kept.append(candidate)
    kept.sort(key=lambda c: (_RANK[c.severity], _ORDER[c.finding]))
    found = [
        Advice(_TOPICS[c.finding], c.severity,
               f"{c.title or c.finding.replace('_', ' ')}: "
               + "; ".join(c.evidence) + (f"; {c.action}" if c.action else ""),
               c.finding, tuple(c.evidence))
        for c in kept
    ]
    if not found:
        found.append(Advice(
            "overall", "ok",
            "no problems seen: the loss, the gap, the update ratios and the "
            "activations look healthy", "healthy"))
    return found
