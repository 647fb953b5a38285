"""Running code inside the compiled train step, around the optimizer update.

Work that must happen at every update, exactly, without a host round trip
(a per-step learning rate, a measurement of one update) cannot live in batch
hooks: with `steps_per_execution = s` they fire once per `s` updates, and any
read of a device value stalls the step pipeline. So callbacks register hooks
here, and one wrapper on the optimizer instance's `apply` runs them:

    before hooks  ->  around hooks wrapping the real apply  ->  after hooks

A hook may also run once after each whole train step (`after_step`), for
what the optimizer never sees: on JAX, Keras updates the loss tracker after
`stateless_apply`, outside the optimizer. The train step is then wrapped
(see `_build_train_function`); on JAX the hook runs in a
`keras.StatelessScope` over the step's returned optimizer and metrics state,
and what it assigns to the optimizer's variables goes back into that state.

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

Every owner of hooks (the decays, the weight averages, `SnapshotEnsemble`,
`UpdateProbe`) goes through one lifecycle, `HookOwner`: it installs its hook
at train begin for that `fit` and removes it at train end. Keras' `fit` does
not call `on_train_end` when training raises, so a hook can outlive a failed
`fit`; `HookOwner.install_hook` removes what is left, in one place: the
owner's own hook, and every hook installed for an earlier `fit` (told apart
by the `params` dict Keras hands each `fit`'s callbacks). Compiling the model
with a new optimizer drops them too. A later `fit` with none of the owners
(after a `KeyboardInterrupt`, say) must not run them either: every `fit`
(and `train_on_batch`) calls `model.make_train_function()` before any
callback's `on_train_begin`, on TensorFlow, JAX and PyTorch alike, so a model
that ever had hooks gets that call wrapped (`_clean_at_fit_start`): it drops
every hook installed for an earlier `fit` and puts Keras' own function back.
That costs one check per `fit`, nothing per step; the owners of the new
`fit` install theirs afterwards, in `on_train_begin`.

The same registry keeps the learning rate to one writer: an owner that sets
the rate (inside the step, or on the host at epoch begin) says so when it
installs, and a second one in the same `fit` fails at train begin with an
error that names both; so does a Keras callback that sets the rate
(`ReduceLROnPlateau`, `LearningRateScheduler`) in the same `fit`.
"""

import dataclasses
import weakref

import keras

from keras_trainopt._internal import backend
from keras_trainopt._internal import distribute
from keras_trainopt._internal import optimizers
from keras_trainopt._internal import running_fit
from keras_trainopt._internal import training

# model -> {"plain": Keras' train function, "hooked": {hook ids: function}}
_FUNCTIONS = weakref.WeakKeyDictionary()


@dataclasses.dataclass(eq=False)
class Hook:
    """What a callback runs in the step; `None` fields are skipped.

    before(): called before each update; after(): after it;
    around(apply) -> apply: wraps the update itself; after_step(): called
    once after each train step, applied update or not (on JAX it may read
    the optimizer's and the metrics' variables, and write the optimizer's).
    """

    before: callable = None
    after: callable = None
    around: callable = None
    after_step: callable = None


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
        _build_train_function(model, wrapper.hooks)
        state["hooked"][key] = model.train_function


def _build_train_function(model, hooks=()):
    """Builds a train function that is traced with the current hooks.

    JAX caches traces by the step function, so a function jitted from Keras'
    own bound `train_step` could pick up a trace made with other hooks (or
    leave one behind for Keras' own function). Building from a fresh wrapper
    gives the hooked function a trace of its own. The wrapper also runs the
    hooks' `after_step`.
    """
    train_step = type(model).train_step
    after_step = [hook.after_step for hook in hooks if hook.after_step]

    def hooked_train_step(*args, **kwargs):
        out = train_step(model, *args, **kwargs)
        if not after_step:
            return out
        if backend.is_jax():
            return _after_step_stateless(model, out, after_step)
        for run in after_step:
            run()
        return out

    model.train_step = hooked_train_step
    try:
        model.make_train_function(force=True)
    finally:
        del model.train_step
    if after_step and backend.is_torch():
        # Keras' PyTorch step looks `train_step` up at each call, so the
        # function built above runs Keras' own: run the hooks after it.
        train_function = model.train_function

        def hooked_train_function(data):
            logs = train_function(data)
            for run in after_step:
                run()
            return logs

        model.train_function = hooked_train_function


def _after_step_stateless(model, out, after_step):
    """Runs `after_step` on JAX's returned state; returns the new state.

    Keras' JAX `train_step(state, data)` returns `(logs, state)` with `state`
    = (trainable, non-trainable, optimizer, metrics variables' values).
    """
    logs, (trainable, non_trainable, optimizer_values, metrics_values) = out
    optimizer_variables = list(model.optimizer.variables)
    mapping = list(zip(optimizer_variables, optimizer_values, strict=True))
    mapping += list(zip(model.metrics_variables, metrics_values,
                        strict=True))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        for run in after_step:
            run()
    optimizer_values = [
        scope.get_current_value(variable) for variable in optimizer_variables
    ]
    return logs, (trainable, non_trainable, optimizer_values, metrics_values)


def _clean_at_fit_start(model):
    """Wraps `model.make_train_function` to drop hooks left by a raised `fit`.

    Keras' `fit` calls it with `force=False` before `on_train_begin`; this
    module calls it with `force=True` to trace a hooked function, which
    must not clean anything.
    """
    if "make_train_function" in vars(model):
        return
    make = type(model).make_train_function

    def make_train_function(force=False):
        if not force:
            drop_leftovers(model)
        return make(model, force)

    model.make_train_function = make_train_function


def drop_leftovers(model):
    """Removes every hook installed for a `fit` (none is running now)."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return
    registry = vars(optimizers.unwrap(optimizer)).get(
        "_keras_trainopt_installed", ()
    )
    for entry in [e for e in registry if e.fit is not None]:
        entry.owner.remove_hook()


def add(model, hook):
    """Runs `hook` in every update of `model`'s train step from now on."""
    _clean_at_fit_start(model)
    _functions(model)  # note Keras' own function before it is replaced
    optimizer = optimizers.unwrap(model.optimizer)
    wrapper = _wrapper(optimizer, create=True)
    wrapper.hooks.append(hook)
    _select_function(model, wrapper)


def replace(model, hook, new_hook):
    """Runs `new_hook` in `hook`'s place; both sets' functions are cached,
    so swapping back and forth between steps costs a lookup, not a trace."""
    wrapper = _wrapper(optimizers.unwrap(model.optimizer), create=False)
    wrapper.hooks[wrapper.hooks.index(hook)] = new_hook
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


# -- one lifecycle for the owners of hooks ------------------------------------


@dataclasses.dataclass(eq=False)
class _Installed:
    owner: object
    model: object
    hook: Hook
    fit: object
    sets_learning_rate: bool


def _installed(model):
    """The owners' registrations on `model`'s optimizer (made on first use).

    Kept on the optimizer that owns the learning rate, so a new optimizer
    (a recompile) starts empty, as its `apply` has no hooks either.
    """
    optimizer = optimizers.unwrap(model.optimizer)
    registry = vars(optimizer).get("_keras_trainopt_installed")
    if registry is None:
        registry = []
        vars(optimizer)["_keras_trainopt_installed"] = registry
    return registry


# Keras' callbacks that set the optimizer's learning rate from the host.
KERAS_RATE_CALLBACKS = (
    keras.callbacks.ReduceLROnPlateau, keras.callbacks.LearningRateScheduler,
)


def _two_writers(first, second, why=""):
    """The error text for two writers of the rate, `first` listed first."""
    return (
        f"{type(first).__name__} and {type(second).__name__} both set the "
        f"learning rate of this optimizer; use one of them.{why} "
        "(StochasticWeightAveraging sets it only with `swa_learning_rate`: "
        "with swa_learning_rate=None it leaves the rate to a decay, "
        "SnapshotEnsemble or Keras' callbacks.)"
    )


def _refuse_keras_rate_callbacks(model, owner):
    """Raises `ValueError` if the running `fit` also has a Keras callback
    that sets the rate (`KERAS_RATE_CALLBACKS`).

    Each writer would overwrite the other's rate without a word: a decay
    sets its own at the next update (`unit="step"`) or epoch, so
    `ReduceLROnPlateau` announces cuts that never take effect.
    """
    callbacks = running_fit.callbacks(model)
    for callback in callbacks:
        if isinstance(callback, KERAS_RATE_CALLBACKS):
            later = owner in callbacks and (
                callbacks.index(owner) > callbacks.index(callback))
            first, second = (callback, owner) if later else (owner, callback)
            raise ValueError(_two_writers(
                first, second,
                f" {type(owner).__name__} would overwrite every rate "
                f"{type(callback).__name__} sets (at its next update or "
                "epoch), which would then never take effect.",
            ))


class HookOwner:
    """The lifecycle of the hooks one object runs in the train step.

    A callback (or a helper such as `UpdateProbe`) calls `install_hook` when
    a `fit` begins and `remove_hook` when it ends; `install_hook` also cleans
    up after a `fit` that raised (see the module docstring) and keeps the
    learning rate to one writer.
    """

    _installed_entry = None

    @property
    def hook_installed(self):
        """Whether this owner is installed (for the current or a raised `fit`)."""
        return self._installed_entry is not None

    def install_hook(self, model, hook=None, *, fit=None, sets_learning_rate=False):
        """Runs `hook` in every update of `model` for one `fit`.

        Args:
            model: the compiled model.
            hook: a `Hook`, or `None` to only register (an owner that sets
                the learning rate from the host).
            fit: what tells this `fit` from earlier ones: the callbacks'
                `params` (one dict per `fit`); `None` outside `fit`.
            sets_learning_rate: whether this owner writes the optimizer's
                learning rate during the `fit`.

        Raises:
            ValueError: `sets_learning_rate` and another owner installed for
                the same `fit` sets the rate too.
        """
        self.remove_hook()  # left over by this owner's `fit` that raised
        registry = _installed(model)
        if fit is not None:  # left over by other owners' `fit` that raised
            for entry in [e for e in registry if e.fit is not fit]:
                entry.owner.remove_hook()
        if sets_learning_rate:
            for entry in registry:
                if entry.sets_learning_rate:
                    raise ValueError(_two_writers(entry.owner, self))
            if fit is not None:
                _refuse_keras_rate_callbacks(model, self)
        entry = _Installed(self, model, hook, fit, sets_learning_rate)
        registry.append(entry)
        self._installed_entry = entry
        if hook is not None:
            add(model, hook)

    @staticmethod
    def host_picks_function(model):
        """Whether the host may pick, before each execution, between train
        functions traced with and without a hook (`swap_hook`).

        A hook that acts on some updates only still costs at every update of
        a traced step: a branch (on TensorFlow, the update runs inside a
        conditional's functions) or the operands it keeps alive (on JAX, XLA
        copies every weight that a branch reads after the update). Where the
        host knows which updates the hook acts on, an execution without one
        runs a function traced without it. The host knows from the
        optimizer's count, read once per epoch, and the batch index, in a
        traced step (JAX, TensorFlow; PyTorch's eager step decides on the
        host anyway, a compiled one keeps the hook), without loss scaling
        (the host cannot foresee which updates are skipped), without
        gradient accumulation (a batch is not an update) and without a
        `tf.distribute` strategy (the two functions hold collectives of
        their own, which every worker must run alike).
        """
        optimizer = model.optimizer
        return (
            not backend.is_torch()
            and not distribute.has_strategy(model)
            and optimizers.unwrap(optimizer) is optimizer
            and optimizers.accumulation_steps(optimizer) == 1
        )

    def swap_hook(self, hook):
        """Between steps: runs `hook` instead of the installed one.

        The next execution runs the train function traced with `hook` (traced
        on its first use, then cached, as `replace` says): the price of
        `host_picks_function` is a second trace and compilation of the train
        step.
        """
        entry = self._installed_entry
        if entry is None or entry.hook is hook:
            return
        replace(entry.model, entry.hook, hook)
        entry.hook = hook

    def remove_hook(self):
        """Stops running this owner's hook; a no-op when none is installed."""
        entry = self._installed_entry
        if entry is None:
            return
        self._installed_entry = None
        registry = _installed(entry.model)
        if entry in registry:
            registry.remove(entry)
        if entry.hook is not None:
            remove(entry.model, entry.hook)


class ScratchStateOwner(HookOwner):
    """A hook owner whose hook writes variables of its own (scratch state).

    Inside JAX's jitted step only the model's and the optimizer's variables
    can be written, so on JAX the owner's `scratch_variables` are attached
    to the optimizer while its hook is installed (as scratch state, which
    `BackupAndRestore` leaves out) and leave it with the hook. Subclasses
    set `model` and list their variables in `scratch_variables`.
    """

    model = None
    scratch_variables = ()

    def install_scratch_hook(self, hook, *, fit=None):
        """`install_hook` on `self.model`, the variables attached on JAX."""
        if backend.is_jax():
            optimizers.attach_state_variables(
                self.model.optimizer, list(self.scratch_variables)
            )
        self.install_hook(self.model, hook, fit=fit)

    def remove_hook(self):
        """`HookOwner.remove_hook`; on JAX the variables leave the state."""
        if not self.hook_installed:
            return
        super().remove_hook()
        if backend.is_jax():
            training.sync_state(self.model)  # before the state shrinks
            optimizers.detach_state_variables(
                self.model.optimizer, list(self.scratch_variables)
            )
