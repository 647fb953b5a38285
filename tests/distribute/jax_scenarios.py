"""Training runs under `keras.distribution.DataParallel` on the JAX backend.

The number of JAX CPU devices must be set before JAX initializes, so
`test_jax_data_parallel.py` starts this module as a fresh subprocess, from
the repository root, with `KERAS_BACKEND=jax` and
`XLA_FLAGS=--xla_force_host_platform_device_count=2`:

    python -m tests.distribute.jax_scenarios OUTDIR CASE [CASE ...]

Each case trains twice in the one process: `single`, with no distribution
(the reference, on the first device), then `data_parallel`, under
`keras.distribution.DataParallel(devices=jax.devices())`, which shards each
global batch of 16 over the two devices and keeps the variables replicated.
A run of case C in mode M writes `<OUTDIR>/<M>/<C>.npz` and
`<OUTDIR>/<M>/<C>.json` (same layout as `scenarios.py`, whose model, data
and recorders it reuses). Nothing runs at import (pytest imports this
module for its doctests).
"""

import os
import sys
import time

from tests.distribute import scenarios
from tests.distribute.scenarios import EPOCHS
from tests.distribute.scenarios import GLOBAL_BATCH
from tests.distribute.scenarios import build_model
from tests.distribute.scenarios import data
from tests.distribute.scenarios import monitor_facts
from tests.distribute.scenarios import rate_recorder
from tests.distribute.scenarios import save

# What each case exercises:
# - averages: the rate set inside the step (StepDecay unit="step"); two
#   averages updated inside the step (EMA every=1, SWA);
# - monitors: the rate set from the host (ExponentialDecay unit="epoch"),
#   the default EMA (every=8, a conditional update), LossMonitor and
#   UpdateRatioLogger.
CASES = ("averages", "monitors")
MODES = ("single", "data_parallel")


def callbacks_for(case, workdir):
    import keras_trainopt as kt

    if case == "averages":  # the same as under the TensorFlow strategies
        return scenarios.callbacks_for(case, workdir, x_probe=None)
    if case == "monitors":
        logs = os.path.join(workdir, "logs")
        return {
            "decay": kt.ExponentialDecay(decay=0.3, unit="epoch"),
            "ema": kt.ExponentialMovingAverage(decay=0.9, every=8,
                                               apply_at_end=False),
            "loss": kt.LossMonitor(logs, every=1, min_steps=4, verbose=0),
            "update_ratio": kt.UpdateRatioLogger(logs, every=3, verbose=0),
        }
    if case == "plain":  # no callback of ours
        return {}
    raise ValueError(f"unknown case {case!r}")


def run_case(case, workdir):
    import keras
    import numpy as np

    os.makedirs(workdir, exist_ok=True)
    model = build_model(jit_compile="auto")
    (x, y), _ = data()
    callbacks = callbacks_for(case, workdir)
    recorder = rate_recorder()
    shardings = set()

    class ShardingRecorder(keras.callbacks.Callback):
        # the optimizer's variables, the averages attached to it included
        def on_epoch_end(self, epoch, logs=None):
            for variable in self.model.optimizer.variables:
                sharding = getattr(variable.value, "sharding", None)
                shardings.add(type(sharding).__name__)

    history = model.fit(
        x, y, batch_size=GLOBAL_BATCH, epochs=EPOCHS, shuffle=False,
        verbose=0, callbacks=[*callbacks.values(), recorder,
                              ShardingRecorder()],
    )
    arrays = {f"final/{i}": w for i, w in enumerate(model.get_weights())}
    facts = {
        "history": {k: [float(v) for v in vs]
                    for k, vs in history.history.items()},
        "rates": recorder.rates,
        "iterations": int(keras.ops.convert_to_numpy(
            model.optimizer.iterations)),
        "weight_shardings": sorted({
            type(getattr(v.value, "sharding", None)).__name__
            for v in model.trainable_variables}),
        "optimizer_shardings": sorted(shardings),
        "num_optimizer_variables": len(model.optimizer.variables),
    }
    for name, callback in callbacks.items():
        if name in ("ema", "swa"):
            for i, w in enumerate(callback.averaged_weights()):
                arrays[f"{name}_average/{i}"] = w
            for i, w in enumerate(callback.raw_weights()):
                arrays[f"{name}_raw/{i}"] = w
            facts[f"{name}_num_averaged"] = callback.num_averaged
        if name in ("loss", "update_ratio"):
            facts.update(monitor_facts("", {name: callback}))
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    return arrays, facts


def main(argv):
    outdir, *cases = argv
    for case in cases:
        if case not in CASES + ("plain",):
            raise SystemExit(f"unknown case {case!r}; cases: {CASES}")
    os.environ["KERAS_BACKEND"] = "jax"
    import jax
    import keras

    assert keras.backend.backend() == "jax", keras.backend.backend()
    devices = jax.devices()
    if len(devices) != 2:
        raise SystemExit(f"expected 2 JAX devices, got {devices} (XLA_FLAGS="
                         f"{os.environ.get('XLA_FLAGS')!r})")
    for mode in MODES:
        if mode == "data_parallel":
            keras.distribution.set_distribution(
                keras.distribution.DataParallel(devices=devices))
        else:
            keras.distribution.set_distribution(None)
        for case in cases:
            start = time.perf_counter()
            arrays, facts = run_case(case, os.path.join(outdir, mode, case))
            facts["seconds"] = time.perf_counter() - start
            facts["num_devices"] = len(devices) if mode != "single" else 1
            save(outdir, mode, case, arrays, facts)
    keras.distribution.set_distribution(None)


if __name__ == "__main__":
    main(sys.argv[1:])
