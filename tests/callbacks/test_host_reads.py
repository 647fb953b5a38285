"""On PyTorch's eager step, the per-update callbacks do not read the device
at every update.

Keras runs PyTorch's train step op by op on the host, so a value the host
takes from the device (a `bool` of a tensor, `.item()`, `.numpy()`) waits
for every kernel queued before it: on a GPU, a sync that leaves the device
idle while the host launches the next step. The averagers and
`UpdateRatioLogger` and `LossMonitor` count the applied updates on the
host instead (`averaging/in_step.py`, `_internal/update_probe.py`,
`_internal/loss_buffer.py`); what is left is one read per averaged update
(whether the weights are finite) and a few per epoch. Counted here on
real tensors, in the middle of real epochs, against the number of updates.
"""

import sys

import keras
import pytest

import keras_trainopt as kt
from tests.callbacks.helpers import tiny_data
from tests.callbacks.helpers import tiny_model

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="PyTorch's step is the one that runs eagerly on the host",
)

HOST_READS = ("__bool__", "item", "numpy", "tolist", "__int__", "__float__",
              "__index__")


def from_the_library(frame):
    while frame is not None:
        name = frame.f_code.co_filename
        if "/keras_trainopt/" in name.replace("\\", "/"):
            return True
        frame = frame.f_back
    return False


class CountReads(keras.callbacks.Callback):
    """Counts the library's host reads of tensors between an epoch's first
    and last step (`on_epoch_begin` of the first callback, `on_epoch_end`
    of the last), per epoch."""

    def __init__(self, monkeypatch):
        super().__init__()
        self.counting = False
        self.reads = []
        import torch

        for name in HOST_READS:
            original = getattr(torch.Tensor, name)

            def counted(tensor, *args, _original=original, **kwargs):
                if self.counting and from_the_library(sys._getframe(1)):
                    self.reads[-1] += 1
                return _original(tensor, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, counted)

    def on_epoch_begin(self, epoch, logs=None):
        self.reads.append(0)
        self.counting = True


class StopCounting(keras.callbacks.Callback):
    def __init__(self, counter):
        super().__init__()
        self.counter = counter

    def on_epoch_end(self, epoch, logs=None):
        self.counter.counting = False


def reads_per_epoch(monkeypatch, callback, steps):
    model = tiny_model()
    x, y = tiny_data(8 * steps)
    counter = CountReads(monkeypatch)
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False,
              callbacks=[counter, callback, StopCounting(counter)])
    assert len(counter.reads) == 3
    monkeypatch.undo()
    return counter.reads


@pytest.mark.parametrize("make, averaged", [
    (lambda: kt.ExponentialMovingAverage(0.999, every=4), lambda n: n // 4),
    (lambda: kt.StochasticWeightAveraging(0), lambda n: 1),
    (lambda: kt.UpdateRatioLogger(None, every=100, verbose=0), lambda n: 0),
    (lambda: kt.LossMonitor(None, every=4, verbose=0), lambda n: 0),
], ids=["ema-every-4", "swa", "update-ratios", "loss-readings"])
def test_an_epoch_twice_as_long_adds_only_the_averaged_updates_reads(
    monkeypatch, make, averaged
):
    # the reads of an epoch: a few for the epoch, plus one per averaged
    # update; none for the other updates
    short = reads_per_epoch(monkeypatch, make(), 16)
    long = reads_per_epoch(monkeypatch, make(), 32)
    assert short[1] == short[2]  # the same every epoch
    assert long[-1] - short[-1] == averaged(32) - averaged(16)
    assert long[-1] < 32 // 2
