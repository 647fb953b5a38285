import keras
import numpy as np
import pytest

from keras_trainopt import StepDecay
from keras_trainopt import nesterov_sgd


def cs231n_nesterov(x, lr, mu, steps, grad):
    """The cs231n form: v_prev = v; v = mu*v - lr*g; x += -mu*v_prev + (1+mu)*v."""
    v = 0.0
    for _ in range(steps):
        v_prev = v
        v = mu * v - lr * grad(x)
        x += -mu * v_prev + (1 + mu) * v
    return x


def test_five_steps_on_a_parabola():
    # f(x) = x^2 from x0 = 1, mu = 0.9, lr = 0.1 (shared/REFERENCE.md).
    x = keras.Variable(1.0)
    optimizer = nesterov_sgd(0.1, momentum=0.9)
    for _ in range(5):
        optimizer.apply([2.0 * x], [x])
    assert float(x) == pytest.approx(-0.4157175808, abs=1e-7)
    assert cs231n_nesterov(1.0, 0.1, 0.9, 5, lambda v: 2 * v) == pytest.approx(
        -0.4157175808, abs=1e-10
    )


def test_matches_cs231n_form_on_a_quadratic_bowl():
    rng = np.random.default_rng(0)
    a = np.diag(rng.uniform(0.5, 3.0, size=4))
    w0 = rng.normal(size=4)
    w = keras.Variable(w0.astype("float32"))
    optimizer = nesterov_sgd(0.05, momentum=0.8)
    for _ in range(20):
        optimizer.apply([keras.ops.convert_to_tensor(a @ np.asarray(w))], [w])
    expected = cs231n_nesterov(w0.copy(), 0.05, 0.8, 20, lambda v: a @ v)
    np.testing.assert_allclose(np.asarray(w), expected, rtol=1e-5, atol=1e-6)


def test_configuration_and_pass_through():
    optimizer = nesterov_sgd(1, momentum=0.95, weight_decay=1e-4, clipnorm=1.0,
                             name="sgd_n")
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert optimizer.nesterov is True
    assert float(optimizer.learning_rate) == 1.0
    assert optimizer.momentum == pytest.approx(0.95)
    assert optimizer.weight_decay == pytest.approx(1e-4)
    assert optimizer.clipnorm == 1.0
    assert optimizer.name == "sgd_n"


def test_accepts_schedules():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    assert nesterov_sgd(schedule)._learning_rate is schedule
    ours = StepDecay(0.1, every=2).to_schedule(steps_per_epoch=5)
    assert nesterov_sgd(ours)._learning_rate is ours


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(momentum=1.0), ValueError,
         r"`momentum` must be in \(0, 1\)\. Received: momentum=1"),
        (dict(momentum=0.0), ValueError, "momentum"),
        (dict(momentum="0.9"), TypeError, "momentum"),
        (dict(learning_rate=0.0), ValueError,
         r"`learning_rate` must be > 0\. Received: learning_rate=0"),
        (dict(learning_rate=float("nan")), ValueError, "learning_rate"),
        (dict(learning_rate=None), TypeError, "learning_rate"),
        (dict(learning_rate=StepDecay(0.1)), TypeError, "to_schedule"),
        (dict(nesterov=False), TypeError, "nesterov=True"),
        (dict(momentun=0.9), TypeError, "unexpected argument.*momentun"),
    ],
)
def test_bad_arguments(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        nesterov_sgd(**kwargs)


# -- found by fuzzing (issue 7) ------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(clipnorm="x"), TypeError, "clipnorm"),
        (dict(clipnorm=-1.0), ValueError, "clipnorm"),
        (dict(clipvalue=0.0), ValueError, "clipvalue"),
        (dict(weight_decay="a"), TypeError, "weight_decay"),
        (dict(weight_decay=-0.1), ValueError, "weight_decay"),
        (dict(use_ema=3), TypeError, "use_ema"),
        (dict(use_ema=True, ema_momentum="x"), TypeError, "ema_momentum"),
        (dict(gradient_accumulation_steps=2.5), TypeError,
         "gradient_accumulation_steps"),
        (dict(loss_scale_factor=float("nan")), ValueError, "loss_scale_factor"),
        (dict(name=5), TypeError, "name"),
        (dict(nesterov=False), TypeError, "nesterov"),
        (dict(momentun=0.9), TypeError, "momentun"),
    ],
)
def test_sgd_arguments_are_checked(kwargs, error, name):
    # before: Keras' SGD took clipnorm="x" & co. and failed at the first
    # update inside the train step; `nesterov`/unknown names were not
    # named in backticks
    with pytest.raises(error, match=f"`{name}`"):
        nesterov_sgd(0.1, **kwargs)


def test_valid_sgd_arguments_still_pass():
    optimizer = nesterov_sgd(0.1, clipnorm=1.0, weight_decay=1e-4,
                             use_ema=True, ema_momentum=0.9,
                             gradient_accumulation_steps=2, name="sgd")
    assert optimizer.clipnorm == 1.0 and optimizer.use_ema


# -- each check is one that Keras' SGD lacks or words badly (issue 17) ---------

NAN = float("nan")

# (argument, a value nesterov_sgd refuses, the error it raises, whether
# use_ema is on). The comment says what Keras' SGD 3.15 does with it.
REFUSED = [
    ("learning_rate", 0.0, ValueError, False),  # takes it
    ("learning_rate", -1.0, ValueError, False),  # takes it
    ("learning_rate", NAN, ValueError, False),  # takes it
    ("learning_rate", None, TypeError, False),  # a ValueError
    ("momentum", 0.0, ValueError, False),  # takes it: classic SGD
    ("momentum", 1.0, ValueError, False),  # takes it
    ("momentum", NAN, ValueError, False),  # takes it
    ("momentum", 1.5, ValueError, False),  # refused without the value
    ("momentum", "0.9", TypeError, False),  # a ValueError without the value
    ("weight_decay", -0.1, ValueError, False),  # takes it
    ("weight_decay", "a", TypeError, False),  # fails in the train step
    ("clipnorm", 0.0, ValueError, False),  # takes it
    ("clipnorm", "x", TypeError, False),  # fails in the train step
    ("clipvalue", -1.0, ValueError, False),  # takes it
    ("global_clipnorm", NAN, ValueError, False),  # takes it
    ("use_ema", 3, TypeError, False),  # takes it
    ("ema_momentum", 1.5, ValueError, False),  # takes it: EMA is off
    ("ema_momentum", "x", TypeError, True),  # "'>' not supported ..."
    ("ema_momentum", NAN, ValueError, True),  # takes it
    ("ema_overwrite_frequency", 0, ValueError, True),  # takes it
    ("ema_overwrite_frequency", 2.5, TypeError, True),  # a ValueError
    ("loss_scale_factor", 0.0, ValueError, False),  # takes it
    ("loss_scale_factor", "x", TypeError, False),  # fails in the train step
    ("gradient_accumulation_steps", 0, ValueError, False),  # takes it
    ("gradient_accumulation_steps", 2.5, TypeError, False),  # takes it
    ("gradient_accumulation_steps", "x", TypeError, False),  # bare TypeError
    ("name", 5, TypeError, False),  # a ValueError
]


def keras_refuses_clearly(kwargs, name, error):
    """Whether Keras' own SGD raises `error` naming `name` and its value."""
    try:
        keras.optimizers.SGD(**{"momentum": 0.9, "nesterov": True, **kwargs})
    except (TypeError, ValueError) as raised:
        message = str(raised)
        return (isinstance(raised, error) and f"`{name}`" in message
                and f"{name}=" in message)
    return False


@pytest.mark.parametrize(
    "name, value, error, use_ema", REFUSED,
    ids=[f"{name}={value!r}" for name, value, _, _ in REFUSED],
)
def test_each_check_is_one_that_keras_sgd_lacks_or_words_badly(
    name, value, error, use_ema
):
    kwargs = {name: value, **({"use_ema": True} if use_ema else {})}
    with pytest.raises(error, match=rf"`{name}`.*Received: {name}="):
        nesterov_sgd(**kwargs)
    assert not keras_refuses_clearly(kwargs, name, error)


def test_what_keras_sgd_checks_clearly_is_left_to_it():
    # Keras refuses more than one kind of clipping, naming them and their
    # values: nesterov_sgd passes that error on as it is.
    kwargs = dict(clipnorm=1.0, clipvalue=0.5)
    assert keras_refuses_clearly(kwargs, "clipnorm", ValueError)
    with pytest.raises(ValueError, match=r"Only one of `clipnorm`.*"
                       r"Received: clipnorm=1.0, clipvalue=0.5"):
        nesterov_sgd(0.1, **kwargs)
