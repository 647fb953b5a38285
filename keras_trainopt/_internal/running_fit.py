"""The `fit` a callback runs in: its epoch iterator and its callback list.

Keras gives a callback the model and `params`, but not the two objects that
an exact mid-epoch resume needs: the epoch iterator (to start the resumed
epoch at the batch after the last one done) and the `CallbackList` (to run
one hook before all the others and one after them). Both are local
variables of the trainer's `fit` (`epoch_iterator`, `callbacks`) in every
Keras 3 backend (TensorFlow, JAX, PyTorch), and `fit` is on the call stack
while any hook runs. `find` reads them from there, once per `fit`, at train
begin.

`start_epoch_at` makes the next epoch of an epoch iterator begin at step
`k`: it draws the first `k` batches from the epoch's data iterator without
handing them to the train function (no forward or backward pass), and
numbers the remaining steps `k, k + 1, ...` as the uninterrupted epoch
would. Drawing a batch still costs what producing it costs: slicing for
arrays, the pipeline's work for a `tf.data.Dataset`. A finite
`keras.utils.PyDataset` read without workers (`workers=1`, Keras' default)
loads only the first of the skipped batches: the others are stand-ins (that
batch again), since the batches are drawn to be thrown away.
"""

import dataclasses
import sys

import keras

_FIT_NAMES = ("fit",)


@dataclasses.dataclass
class RunningFit:
    """What `find` read from the trainer's `fit` frame."""

    code: object  # the `fit` function's code object (to recognise the frame)
    epoch_iterator: object
    callback_list: object  # a keras.callbacks.CallbackList, or None
    shuffle: object  # `fit`'s `shuffle` argument
    initial_epoch: int  # `fit`'s `initial_epoch` argument
    # whether `fit` validates at all (`validation_data`, which `fit` has set
    # from `validation_split` before train begin), and on which epochs
    validates: bool
    validation_freq: object  # `fit`'s `validation_freq`: an int or a list


def find(model, max_depth=32):
    """The `fit` of `model` on the current call stack, or `None`.

    `None` when the hook was called some other way (a test driving hooks by
    hand, a custom training loop).
    """
    frame = sys._getframe(1)
    depth = 0
    while frame is not None and depth < max_depth:
        if frame.f_code.co_name in _FIT_NAMES:
            local = frame.f_locals
            if local.get("self") is model and "epoch_iterator" in local:
                callback_list = local.get("callbacks")
                if not isinstance(callback_list, keras.callbacks.CallbackList):
                    callback_list = None
                return RunningFit(
                    code=frame.f_code,
                    epoch_iterator=local["epoch_iterator"],
                    callback_list=callback_list,
                    shuffle=local.get("shuffle"),
                    initial_epoch=int(local.get("initial_epoch") or 0),
                    validates=local.get("validation_data") is not None,
                    validation_freq=local.get("validation_freq", 1),
                )
        frame = frame.f_back
        depth += 1
    return None


def callbacks(model):
    """The callbacks of `model`'s `fit` on the call stack, in list order
    (Keras' own `History` and progress bar included); `[]` outside `fit`."""
    running = find(model)
    callback_list = running.callback_list if running is not None else None
    return list(getattr(callback_list, "callbacks", ()))


def validated_epochs(running, epochs):
    """The epochs (0-based) of `range(epochs)` that `running`'s `fit`
    validates, as Keras' `Trainer._should_eval` picks them."""
    if not running.validates:
        return []
    freq = running.validation_freq
    if isinstance(freq, int):
        return [e for e in range(epochs) if (e + 1) % freq == 0]
    return [e for e in range(epochs) if e + 1 in freq]


def is_running(running, model, frame):
    """Whether `running`'s `fit` of `model` is on the stack above `frame`."""
    while frame is not None:
        if frame.f_code is running.code and frame.f_locals.get("self") is model:
            return True
        frame = frame.f_back
    return False


class DataEndedError(RuntimeError):
    """The data ran out while the batches already done were skipped."""


def start_epoch_at(epoch_iterator, steps, describe):
    """Makes the next epoch of `epoch_iterator` start at step `steps`.

    Args:
        epoch_iterator: the trainer's `EpochIterator` (from `find`).
        steps: train steps of the epoch already done (a multiple of the
            run's `steps_per_execution`).
        describe: text naming the backup, for the error if the data runs
            out first.

    Raises:
        ValueError: `steps` is not a multiple of `steps_per_execution`.
    """
    per_execution = int(getattr(epoch_iterator, "steps_per_execution", 1) or 1)
    if steps % per_execution:
        raise ValueError(
            f"{describe} was taken after {steps} steps of its epoch, which is "
            f"not a multiple of this fit's steps_per_execution={per_execution}: "
            "resume with the steps_per_execution of the backed-up run."
        )
    original = epoch_iterator._enumerate_iterator  # the bound method
    _skip_py_dataset_loads(getattr(epoch_iterator, "data_adapter", None), steps)

    def skipping():
        # once: the epochs after this one run as Keras runs them
        del epoch_iterator._enumerate_iterator
        skipped = 0
        for begin, end, iterator in original():
            if skipped < steps:
                for _ in range(end - begin + 1):
                    try:
                        next(iterator)
                    except StopIteration:
                        raise DataEndedError(
                            f"The data ran out after {skipped} batches while "
                            f"skipping the {steps} batches that {describe} "
                            "had done: this fit's data is not the backed-up "
                            "run's."
                        ) from None
                    skipped += 1
                continue
            yield begin, end, iterator

    epoch_iterator._enumerate_iterator = skipping


def build_metrics(model, running):
    """Builds the compiled metrics before the first step, if not yet built.

    Keras' TensorFlow trainer (without a distribution strategy) builds them
    when it traces the train step; a resumed epoch puts the accumulators
    back before that. Built here from the shapes of the fit's data.
    """
    compiled = getattr(model, "_compile_metrics", None)
    if compiled is None or compiled.built:
        return
    dataset = getattr(running.epoch_iterator, "_distributed_dataset", None)
    spec = getattr(dataset, "element_spec", None)
    if spec is None:
        return
    model._symbolic_build(data_batch=spec)


class _SkipLoads:
    """A `PyDataset` whose next `count` reads return one loaded batch.

    Stands in for the adapter's `py_dataset` while a resumed epoch draws
    the batches it skips; then puts the real one back.
    """

    def __init__(self, adapter, count):
        self._adapter, self._real = adapter, adapter.py_dataset
        self._count, self._batch = count, None

    def __getattr__(self, name):
        return getattr(self._real, name)

    def __len__(self):
        return len(self._real)

    def __getitem__(self, index):
        if self._batch is None:
            self._batch = self._real[index]
        self._count -= 1
        if self._count <= 0:
            self._adapter.py_dataset = self._real
        return self._batch


def _skip_py_dataset_loads(adapter, steps):
    """Lets a skipping epoch load one batch of a PyDataset instead of all."""
    if (
        steps < 2
        or type(adapter).__name__ != "PyDatasetAdapter"
        or getattr(adapter, "enqueuer", True) is not None
        or getattr(getattr(adapter, "py_dataset", None), "num_batches", None)
        is None
    ):
        return  # workers or multiprocessing, or an endless PyDataset: load
    adapter.py_dataset = _SkipLoads(adapter, steps)
