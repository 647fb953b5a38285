"""Running code inside the compiled train step, around the optimizer update.

Work that must happen at every update, exactly, without a host round trip
(a per-step learning rate, a measurement of one update) cannot live in batch
hooks: with `steps_per_execution = s` they fire once per `s` updates, and any
read of a device value stalls the step pipeline. So callbacks register hooks
here, and one wrapper on the optimizer instance's `apply` runs them:

    before hooks  ->  around hooks wrapping the real apply  ->  after hooks

`apply` is what Keras' TensorFlow and PyTorch train steps call, and what
`stateless_apply` calls under JAX, so hooks that only touch the optimizer's
own variables (its learning rate) run on every backend. The wrapper sits on
the optimizer that owns the learning rate (inside a `LossScaleOptimizer`, so
skipped steps run no hook).

A traced train function bakes the hooks in, so the set of hooks decides which
function `fit` must run. Keras' own function (no hooks) is kept aside while
hooks are installed and put back when the last one goes; functions built with
hooks are cached per set of hooks, so calling `fit` again with the same
callbacks reuses the traced function instead of tracing anew (a recompile of
the model, which replaces Keras' function, empties the cache).

Keras' `fit` does not call `on_train_end` when training raises, so a hook can
outlive a failed `fit`: the owning callback removes it when it starts its
next `fit`, and compiling the model with a new optimizer drops it.
"""

import dataclasses
import weakref

from keras_trainopt._internal import optimizers

# model -> {"plain": Keras' train function, "hooked": {hook ids: function}}
_FUNCTIONS = weakref.WeakKeyDictionary()


@dataclasses.dataclass(eq=False)
class Hook:
    """What a callback runs in the step; `None` fields are skipped.

    before(): called before each update; after(): after it;
    around(apply) -> apply: wraps the update itself.
    """

    before: callable = None
    after: callable = None
    around: callable = None


class _Wrapper:
    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.hooks = []
        self.original = type(optimizer).apply.__get__(optimizer)

    def __call__(self, grads, trainable_variables=None):
        for hook in self.hooks:
            if hook.before is not None:
                hook.before()
        apply = self.original
        for hook in self.hooks:
            if hook.around is not None:
                apply = hook.around(apply)
        apply(grads, trainable_variables)
        for hook in self.hooks:
            if hook.after is not None:
                hook.after()


def _wrapper(optimizer, create):
    wrapper = vars(optimizer).get("apply")
    if isinstance(wrapper, _Wrapper):
        return wrapper
    if not create:
        return None
    wrapper = _Wrapper(optimizer)
    optimizer.apply = wrapper
    return wrapper


def _functions(model):
    state = _FUNCTIONS.setdefault(model, {"plain": None, "hooked": {}})
    current = model.train_function
    if current is not None and current is not state["plain"] and all(
        current is not f for f in state["hooked"].values()
    ):
        # Keras built a new function (first fit, or after a recompile):
        # functions traced for the old one are stale.
        state["plain"], state["hooked"] = current, {}
    return state


def _select_function(model, wrapper):
    state = _functions(model)
    if wrapper is None or not wrapper.hooks:
        model.train_function = state["plain"]
        return
    key = tuple(id(hook) for hook in wrapper.hooks)
    cached = state["hooked"].get(key)
    if cached is not None:
        model.train_function = cached
    else:
        _build_train_function(model)
        state["hooked"][key] = model.train_function


def _build_train_function(model):
    """Builds a train function that is traced with the current hooks.

    JAX caches traces by the step function, so a function jitted from Keras'
    own bound `train_step` could pick up a trace made with other hooks (or
    leave one behind for Keras' own function). Building from a fresh wrapper
    gives the hooked function a trace of its own.
    """
    train_step = type(model).train_step

    def hooked_train_step(*args, **kwargs):
        return train_step(model, *args, **kwargs)

    model.train_step = hooked_train_step
    try:
        model.make_train_function(force=True)
    finally:
        del model.train_step


def add(model, hook):
    """Runs `hook` in every update of `model`'s train step from now on."""
    _functions(model)  # note Keras' own function before it is replaced
    optimizer = optimizers.unwrap(model.optimizer)
    wrapper = _wrapper(optimizer, create=True)
    wrapper.hooks.append(hook)
    _select_function(model, wrapper)


def remove(model, hook):
    """Stops running `hook`; removes the wrapper with the last hook."""
    optimizer = optimizers.unwrap(model.optimizer)
    wrapper = _wrapper(optimizer, create=False)
    if wrapper is None or hook not in wrapper.hooks:
        return
    wrapper.hooks.remove(hook)
    if not wrapper.hooks:
        del optimizer.apply
    _select_function(model, wrapper)
