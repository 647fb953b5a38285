"""Turning the monitors' findings into concrete advice."""

import dataclasses
import math

from keras_trainopt._internal import validation

SEVERITIES = ("problem", "warning", "ok")
# The defaults of `advise`, named for the report's charts to draw the same
# lines: the healthy band of update ratios (around cs231n's ~1e-3) and the
# fractions of saturated or dead units above which a layer is reported.
RATIO_BAND = (1e-4, 1e-2)
SATURATION_THRESHOLD = 0.5
DEAD_THRESHOLD = 0.5


@dataclasses.dataclass(frozen=True)
class Advice:
    """One finding and what to do about it.

    `advise()` returns a list of them, worst first; `str(advice)` is the
    message.

    >>> from keras_trainopt.diagnostics import Advice
    >>> print(Advice("fit", "warning", "overfitting: add L2 or dropout"))
    overfitting: add L2 or dropout

    Args:
        topic: "learning_rate", "fit", "update_ratio", "activations" or
            "overall".
        severity: one of `SEVERITIES` ("problem", "warning", "ok").
        message: what was seen and what to do, in one sentence.

    Reference: cs231n, "Neural Networks Part 3: Learning and Evaluation",
    babysitting the learning process.
    """

    topic: str
    severity: str
    message: str

    def __str__(self):
        return self.message


def advise(
    *,
    loss=None,
    fit=None,
    update_ratios=None,
    activations=None,
    ratio_band=RATIO_BAND,
    saturation_threshold=SATURATION_THRESHOLD,
    dead_threshold=DEAD_THRESHOLD,
    strong_gap=0.2,
):
    """What the monitors' findings mean, as a list of `Advice`, worst first.

    Each input is optional (a monitor that did not run is skipped):

    - `loss`: `{"diagnosis", "reason", "diverged_at_step", "learning_rate"}`
      from `LossMonitor` (`learning_rate`: the rate when it diverged, or the
      last one);
    - `fit`: `{"diagnosis", "reason", "gaps", "best_epoch", "epoch"}` from
      `OverfittingMonitor` (`gaps` per epoch, `best_epoch` 0-based or None,
      `epoch` the 1-based number of the last epoch, default `len(gaps)`);
    - `update_ratios`: `{layer: ratio}` from `UpdateRatioLogger`;
    - `activations`: `{layer: {"saturated_fraction", "dead_fraction"}}` from
      `ActivationMonitor`.

    The rules (cs231n, "Babysitting the learning process"): a diverged or
    oscillating loss means the learning rate is too high, try a tenth of it;
    a slow, linear fall that it is too low; a growing train/validation gap
    calls for regularization or an earlier stop; update ratios far from
    ~1e-3 single out layers whose rate is off; saturated tanh/sigmoid units
    and dead ReLUs point at the initial weights or the rate. A flat loss
    next to high update ratios or dead ReLUs is not read as a rate too low:
    a rate too high at the start kills ReLUs and stalls the loss.

    >>> from keras_trainopt.diagnostics import advise
    >>> for a in advise(loss={"diagnosis": "learning_rate_too_high",
    ...                       "reason": "the loss diverged at step 120",
    ...                       "diverged_at_step": 120, "learning_rate": 0.03},
    ...                 activations={"dense_2": {"saturated_fraction": 0.95,
    ...                                          "dead_fraction": None}}):
    ...     print(a)  # doctest: +NORMALIZE_WHITESPACE
    learning rate too high: the loss diverged at step 120; try about 0.003
    layer dense_2 is 95% saturated: lower its initial weights (e.g. Glorot or
    He initialization) or normalize its inputs

    Args:
        loss, fit, update_ratios, activations: the findings, as above.
        ratio_band: the healthy range of update ratios.
        saturation_threshold, dead_threshold: fractions of saturated or
            dead units above which a layer is reported.
        strong_gap: an overfitting gap above this is called "strong".

    Reference: cs231n, "Neural Networks Part 3: Learning and Evaluation".
    """
    loss = validation.check_mapping("loss", loss, allow_none=True)
    fit = validation.check_mapping("fit", fit, allow_none=True)
    update_ratios = validation.check_mapping("update_ratios", update_ratios,
                                             allow_none=True)
    activations = validation.check_mapping("activations", activations,
                                           allow_none=True)
    ratio_band = _check_band(ratio_band)
    saturation_threshold = validation.check_real(
        "saturation_threshold", saturation_threshold, low=0.0, high=1.0)
    dead_threshold = validation.check_real("dead_threshold", dead_threshold,
                                           low=0.0, high=1.0)
    strong_gap = validation.check_real("strong_gap", strong_gap, low=0.0)
    found = []
    found += _learning_rate(
        loss, _signs_of_a_high_rate(update_ratios, ratio_band, activations,
                                    dead_threshold))
    found += _fit(fit, strong_gap)
    found += _ratios(update_ratios, ratio_band)
    found += _activations(activations, saturation_threshold, dead_threshold)
    if not any(a.severity != "ok" for a in found):
        found.append(Advice("overall", "ok",
                            "no problems seen: the loss, the gap, the update "
                            "ratios and the activations look healthy"))
    order = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(found, key=lambda a: order[a.severity])


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


def _signs_of_a_high_rate(ratios, band, activations, dead_threshold):
    """What contradicts a "too low" verdict: high update ratios, dead ReLUs."""
    signs = [f"layer {layer}'s update ratio is {ratio:.1e}"
             for layer, ratio in (ratios or {}).items()
             if ratio is not None and math.isfinite(ratio) and ratio > band[1]]
    signs += [f"layer {layer} has {stats['dead_fraction']:.0%} dead units"
              for layer, stats in (activations or {}).items()
              if stats.get("dead_fraction") is not None
              and stats["dead_fraction"] >= dead_threshold]
    return signs


def _learning_rate(loss, signs_of_a_high_rate=()):
    if not loss:
        return []
    diagnosis, reason = loss.get("diagnosis"), loss.get("reason", "")
    rate = loss.get("learning_rate")
    if diagnosis == "learning_rate_too_high":
        step = loss.get("diverged_at_step")
        what = (f"the loss diverged at step {step}" if step is not None
                else reason.split(":")[0])
        hint = f"; try about {rate / 10:.2g}" if rate else "; lower it"
        return [Advice("learning_rate", "problem",
                       f"learning rate too high: {what}{hint}")]
    if diagnosis == "learning_rate_too_low" and signs_of_a_high_rate:
        # A flat loss with dead units or big updates is a rate too high that
        # stalled the network (dying ReLUs), not one too low: never say
        # "raise it" next to "too high".
        hint = f", so try about {rate / 10:.2g}" if rate else ", so lower it"
        return [Advice(
            "learning_rate", "warning",
            f"the loss hardly fell, yet {' and '.join(signs_of_a_high_rate)}: "
            "do not raise the learning rate; a rate too high early on kills "
            f"ReLUs and stalls the loss{hint}")]
    if diagnosis == "learning_rate_too_low":
        hint = f"; try about {rate * 3:.2g}" if rate else "; raise it"
        return [Advice("learning_rate", "warning",
                       f"learning rate too low: {reason.split(':')[0]}{hint}")]
    return []


def _fit(fit, strong_gap):
    if not fit:
        return []
    diagnosis = fit.get("diagnosis")
    gaps = fit.get("gaps") or []
    if gaps and not math.isfinite(gaps[-1]):
        return []  # a diverged loss, reported as such
    if diagnosis == "overfitting" and gaps:
        epoch = fit.get("epoch") or len(gaps)
        best = fit.get("best_epoch")
        stop = f", or stop at epoch {best + 1}" if best is not None else ""
        strength = (
            "strong overfitting" if gaps[-1] > strong_gap else "overfitting"
        )
        return [Advice("fit", "problem",
                       f"{strength}: gap {gaps[-1]:.2f} at epoch {epoch}; add "
                       f"L2 or dropout, or get more data{stop}")]
    if diagnosis == "underfitting":
        return [Advice("fit", "warning",
                       "underfitting: validation tracks training but training "
                       "itself is poor; use a bigger model, train longer, or "
                       "regularize less")]
    return []


def _ratios(ratios, band):
    low, high = band
    found = []
    for layer, ratio in (ratios or {}).items():
        if ratio is None:
            continue
        if not math.isfinite(ratio):
            found.append(Advice(
                "update_ratio", "problem",
                f"layer {layer}: update ratio is not finite: its weights "
                "overflowed; lower the learning rate"))
        elif ratio < low:
            found.append(Advice(
                "update_ratio", "warning",
                f"layer {layer}: update ratio {ratio:.1e} (healthy ~1e-3) is "
                "low: its learning rate is too low, or its weights too large"))
        elif ratio > high:
            found.append(Advice(
                "update_ratio", "warning",
                f"layer {layer}: update ratio {ratio:.1e} (healthy ~1e-3) is "
                "high: its learning rate is too high"))
    return found


def _activations(activations, saturation_threshold, dead_threshold):
    found = []
    for layer, stats in (activations or {}).items():
        saturated = stats.get("saturated_fraction")
        dead = stats.get("dead_fraction")
        if saturated is not None and saturated >= saturation_threshold:
            found.append(Advice(
                "activations", "problem",
                f"layer {layer} is {saturated:.0%} saturated: lower its "
                "initial weights (e.g. Glorot or He initialization) or "
                "normalize its inputs"))
        if dead is not None and dead >= dead_threshold:
            found.append(Advice(
                "activations", "problem",
                f"layer {layer} has {dead:.0%} dead units: lower the learning "
                "rate, or use He initialization or a leaky ReLU"))
    return found
