"""`apply_hooks`: hooks around the optimizer update, and their lifecycle.

The order and counts are checked on an eager `optimizer.apply` (every
backend runs Python there at each call); the traced functions through `fit`.
"""

import keras
import numpy as np
import pytest

from keras_trainopt._internal import apply_hooks
from tests.callbacks.helpers import tiny_data
from tests.callbacks.helpers import tiny_model


def apply_once(model):
    """One eager optimizer update with gradients of ones."""
    variables = model.trainable_variables
    grads = [keras.ops.ones(v.shape, v.dtype) for v in variables]
    model.optimizer.apply(grads, variables)


def iterations(model):
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def recording_hook(name, events, model):
    """A hook with all three parts, each appending to `events`."""

    def around(apply):
        def wrapped(grads, trainable_variables=None):
            events.append((f"{name}.enter", iterations(model)))
            apply(grads, trainable_variables)
            events.append((f"{name}.exit", iterations(model)))

        return wrapped

    return apply_hooks.Hook(
        before=lambda: events.append((f"{name}.before", iterations(model))),
        after=lambda: events.append((f"{name}.after", iterations(model))),
        around=around,
    )


def test_before_around_after_in_order_of_addition():
    model = tiny_model()
    model.optimizer.build(model.trainable_variables)
    events = []
    apply_hooks.add(model, recording_hook("a", events, model))
    apply_hooks.add(model, recording_hook("b", events, model))
    apply_once(model)
    # befores in order, the later `around` outermost, afters in order; the
    # real update (iterations 0 -> 1) in the middle
    assert events == [
        ("a.before", 0), ("b.before", 0),
        ("b.enter", 0), ("a.enter", 0), ("a.exit", 1), ("b.exit", 1),
        ("a.after", 1), ("b.after", 1),
    ]


def test_remove_stops_the_hook_and_the_last_one_takes_the_wrapper():
    model = tiny_model()
    model.optimizer.build(model.trainable_variables)
    calls = []
    first = apply_hooks.Hook(after=lambda: calls.append("first"))
    second = apply_hooks.Hook(before=lambda: calls.append("second"))
    apply_hooks.add(model, first)
    apply_hooks.add(model, second)
    assert "apply" in vars(model.optimizer)
    apply_hooks.remove(model, first)
    apply_once(model)
    assert calls == ["second"]
    apply_hooks.remove(model, second)
    apply_hooks.remove(model, second)  # a second removal is a no-op
    assert "apply" not in vars(model.optimizer)
    apply_once(model)
    assert calls == ["second"]
    assert iterations(model) == 2  # both updates were applied


def test_the_hook_runs_on_the_optimizer_inside_loss_scaling():
    model = tiny_model(keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(0.1)))
    apply_hooks.add(model, apply_hooks.Hook(after=lambda: None))
    assert "apply" in vars(model.optimizer.inner_optimizer)
    assert "apply" not in vars(model.optimizer)


def test_train_functions_are_cached_per_set_of_hooks():
    model = tiny_model()
    x, y = tiny_data()
    model.fit(x, y, epochs=1, verbose=0)
    plain = model.train_function
    first = apply_hooks.Hook(after=lambda: None)
    second = apply_hooks.Hook(after=lambda: None)
    apply_hooks.add(model, first)
    with_first = model.train_function
    assert with_first is not plain
    apply_hooks.add(model, second)
    with_both = model.train_function
    assert with_both not in (plain, with_first)
    apply_hooks.remove(model, second)
    assert model.train_function is with_first  # no new trace
    apply_hooks.remove(model, first)
    assert model.train_function is plain  # Keras' own function is back
    apply_hooks.add(model, first)
    assert model.train_function is with_first
    apply_hooks.remove(model, first)
    model.compile(keras.optimizers.SGD(0.1), loss="mse")  # a new function
    model.fit(x, y, epochs=1, verbose=0)
    apply_hooks.add(model, first)
    assert model.train_function is not with_first  # the cache was emptied
    apply_hooks.remove(model, first)


class Counter(apply_hooks.HookOwner, keras.callbacks.Callback):
    """Counts the updates its hook sees (the step runs eagerly)."""

    def __init__(self, sets_learning_rate=False):
        super().__init__()
        self.calls = 0
        self.sets_learning_rate = sets_learning_rate
        self.hook = apply_hooks.Hook(after=self._count)

    def _count(self):
        self.calls += 1

    def on_train_begin(self, logs=None):
        self.install_hook(self.model, self.hook, fit=self.params,
                          sets_learning_rate=self.sets_learning_rate)

    def on_train_end(self, logs=None):
        self.remove_hook()


class RaiseAtBatch(keras.callbacks.Callback):
    def __init__(self, batch):
        super().__init__()
        self.batch = batch

    def on_train_batch_begin(self, batch, logs=None):
        if batch == self.batch:
            raise RuntimeError("stop")


def eager_model():
    model = tiny_model()
    model.compile(keras.optimizers.SGD(0.1), loss="mse", run_eagerly=True)
    return model


def test_owner_runs_its_hook_for_one_fit():
    model, (x, y) = eager_model(), tiny_data()
    counter = Counter()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[counter])
    assert counter.calls == 8
    assert not counter.hook_installed
    assert "apply" not in vars(model.optimizer)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # without it
    assert counter.calls == 8


def test_a_raised_fit_is_cleaned_up_by_the_next_one():
    model, (x, y) = eager_model(), tiny_data()
    left = Counter()
    with pytest.raises(RuntimeError, match="stop"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0,
                  callbacks=[left, RaiseAtBatch(2)])
    assert left.calls == 2
    assert left.hook_installed  # Keras called no on_train_end
    # the next fit with another owner removes the leftover first
    other = Counter()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[other])
    assert (left.calls, other.calls) == (2, 4)
    assert not left.hook_installed
    assert "apply" not in vars(model.optimizer)


def test_a_raised_fit_is_cleaned_up_when_the_owner_comes_back():
    model, (x, y) = eager_model(), tiny_data()
    counter = Counter()
    with pytest.raises(RuntimeError, match="stop"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0,
                  callbacks=[counter, RaiseAtBatch(1)])
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[counter])
    assert counter.calls == 1 + 4  # installed once, not twice


def test_two_rate_writers_in_one_fit_fail_naming_both():
    model, (x, y) = eager_model(), tiny_data()

    class FirstWriter(Counter):
        pass

    class SecondWriter(Counter):
        pass

    first, second = FirstWriter(True), SecondWriter(True)
    with pytest.raises(
        ValueError,
        match="FirstWriter and SecondWriter both set the learning rate of "
        "this optimizer; use one of them",
    ):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0,
                  callbacks=[first, second, Counter()])
    assert iterations(model) == 0  # it failed at train begin
    # the writer of the failed fit does not block the next one
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[second])
    assert (first.calls, second.calls) == (0, 4)
    assert not first.hook_installed


def test_a_writer_and_a_reader_share_a_fit():
    model, (x, y) = eager_model(), tiny_data()
    writer, reader = Counter(True), Counter(False)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0,
              callbacks=[writer, reader])
    assert (writer.calls, reader.calls) == (4, 4)
    np.testing.assert_equal(iterations(model), 4)


@pytest.mark.parametrize("train_batches", [False, True])
def test_after_step_runs_once_per_train_step_with_its_state(train_batches):
    # The hook counts steps in a variable attached to the optimizer (on JAX
    # it runs on the state the step returns, and its writes go back there)
    # and records the loss tracker's count after each step.
    from keras_trainopt._internal import optimizers

    model = tiny_model()
    x, y = tiny_data(64)
    model.fit(x[:8], y[:8], batch_size=8, epochs=1, verbose=0)  # builds all
    steps = optimizers.add_state_variable(
        model, dtype="int32", name="steps_seen", backed_up=False)
    seen = optimizers.add_state_variable(
        model, dtype="float32", name="samples_seen", backed_up=False)
    optimizers.attach_state_variables(model.optimizer, [steps, seen])
    tracker = next(m for m in model.metrics if m.name == "loss")

    def after_step():
        steps.assign(steps.value + 1)
        seen.assign(seen.value + keras.ops.cast(tracker.count.value, "float32"))

    owner = apply_hooks.HookOwner()
    owner.install_hook(model, apply_hooks.Hook(after_step=after_step))
    if train_batches:
        for start in range(0, 64, 8):
            model.train_on_batch(x[start:start + 8], y[start:start + 8])
        expected_seen = 8 * 8  # train_on_batch resets the tracker each time
    else:
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        # the tracker's count after each step: 8, 16, ... 64, per epoch
        expected_seen = 2 * sum(8 * k for k in range(1, 9))
    owner.remove_hook()
    optimizers.detach_state_variables(model.optimizer, [steps, seen])
    assert int(keras.ops.convert_to_numpy(steps)) == (8 if train_batches else 16)
    assert float(keras.ops.convert_to_numpy(seen)) == expected_seen
