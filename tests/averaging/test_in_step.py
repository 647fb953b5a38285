"""`averaging.in_step`: the running average kept in the optimizer.

Run eagerly, between steps (the same code the train step traces), and
compared with the rule written out in NumPy here.
"""

import keras
import numpy as np
import pytest

from keras_trainopt._internal import optimizers
from keras_trainopt.averaging import in_step
from tests.callbacks.helpers import tiny_model


def numpy_of(values):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in values]


def weights(state):
    return numpy_of([v.value for v in state.sources])


def make_average(c=0.25):
    model = tiny_model()
    optimizers.build_optimizer(model)
    return model, in_step.InStepAverage(model, "test", lambda n: c)


def set_weights(state, arrays):
    for variable, value in zip(state.sources, arrays, strict=True):
        variable.assign(value)


def random_weights(state, seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=v.shape).astype("float32") for v in state.sources]


def test_starts_at_the_weights_with_no_terms():
    _, state = make_average()
    for a, w in zip(state.average_arrays(), weights(state), strict=True):
        np.testing.assert_array_equal(a, w)
    assert state.counts() == (0, 0)


def test_update_follows_the_rule():
    _, state = make_average(c=0.25)
    expected = weights(state)
    for seed in range(3):
        new = random_weights(state, seed)
        set_weights(state, new)
        state.update()
        expected = [
            a + np.float32(0.25) * (w - a) for a, w in zip(expected, new, strict=True)
        ]
    for a, e in zip(state.average_arrays(), expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-7)
    assert state.counts() == (3, 0)


def test_the_coefficient_sees_the_terms_so_far():
    model = tiny_model()
    optimizers.build_optimizer(model)
    state = in_step.InStepAverage(
        model, "mean", lambda n: 1.0 / (keras.ops.cast(n, "float32") + 1.0)
    )
    terms = [weights(state)]
    for seed in range(4):
        terms.append(random_weights(state, seed))
        set_weights(state, terms[-1])
        state.update()
    # c = 1 / (n + 1) after the first term: the mean of the last four (the
    # initial weights got coefficient 1 at n = 0)
    mean = [np.mean([t[i] for t in terms[1:]], axis=0)
            for i in range(len(terms[0]))]
    for a, m in zip(state.average_arrays(), mean, strict=True):
        np.testing.assert_allclose(a, m, rtol=1e-5, atol=1e-6)


def test_a_non_finite_weight_skips_the_update_bit_for_bit():
    _, state = make_average()
    before = state.average_arrays()
    bad = random_weights(state, 0)
    bad[0][0, 0] = np.nan
    set_weights(state, bad)
    state.update()
    bad[-1][0] = np.inf
    bad[0][0, 0] = 1.0
    set_weights(state, bad)
    state.update()
    for a, b in zip(state.average_arrays(), before, strict=True):
        np.testing.assert_array_equal(a, b)
    assert state.counts() == (0, 2)


def test_due_false_changes_nothing():
    _, state = make_average()
    before = state.average_arrays()
    set_weights(state, random_weights(state, 1))
    state.update(keras.ops.convert_to_tensor(False))
    for a, b in zip(state.average_arrays(), before, strict=True):
        np.testing.assert_array_equal(a, b)
    assert state.counts() == (0, 0)
    state.update(keras.ops.convert_to_tensor(True))
    assert state.counts() == (1, 0)


def bits(arrays):
    return [np.asarray(a, "float32").view(np.uint32) for a in arrays]


def test_swap_in_and_out_is_bit_for_bit():
    _, state = make_average(c=1.0 / 3.0)
    set_weights(state, random_weights(state, 2))
    state.update()
    raw = random_weights(state, 3)
    raw[0][0, 0] = -0.0
    raw[0][0, 1] = np.float32(1e-45)  # subnormal
    set_weights(state, raw)
    average = state.average_arrays()
    assert not state.swapped_in
    state.swap_in()
    state.swap_in()  # a second swap-in is a no-op
    assert state.swapped_in
    for w, a in zip(bits(weights(state)), bits(average), strict=True):
        np.testing.assert_array_equal(w, a)
    for r, expected in zip(bits(state.raw_arrays()), bits(raw), strict=True):
        np.testing.assert_array_equal(r, expected)
    for a, expected in zip(bits(state.average_arrays()), bits(average), strict=True):
        np.testing.assert_array_equal(a, expected)  # the average is kept
    state.swap_out()
    assert not state.swapped_in
    for w, expected in zip(bits(weights(state)), bits(raw), strict=True):
        np.testing.assert_array_equal(w, expected)
    state.swap_out()  # a second swap-out is a no-op
    for w, expected in zip(bits(weights(state)), bits(raw), strict=True):
        np.testing.assert_array_equal(w, expected)


def test_put_in_leaves_the_average_in_the_model():
    _, state = make_average()
    set_weights(state, random_weights(state, 4))
    state.update()
    average = state.average_arrays()
    state.put_in()
    for w, a in zip(weights(state), average, strict=True):
        np.testing.assert_array_equal(w, a)
    set_weights(state, random_weights(state, 5))  # the average is its own
    for a, b in zip(state.average_arrays(), average, strict=True):
        np.testing.assert_array_equal(a, b)


def test_load_checks_count_and_shapes():
    _, state = make_average()
    arrays = random_weights(state, 6)
    state.load(arrays, 7, 2)
    for a, b in zip(state.average_arrays(), arrays, strict=True):
        np.testing.assert_array_equal(a, b)
    assert state.counts() == (7, 2)
    with pytest.raises(ValueError, match="holds 1 averaged arrays but the "
                       "model has 4 trainable weights"):
        state.load(arrays[:1], 0, 0)
    wrong = [np.zeros((5, 5), "float32")] + arrays[1:]
    with pytest.raises(ValueError, match=r"has shape \(5, 5\); the weight "
                       r"has shape \(4, 3\)"):
        state.load(wrong, 0, 0)


def test_variables_are_named_after_the_weights():
    _, state = make_average()
    names = [v.name for v in state.variables]
    assert names[-2:] == ["test_num_averaged", "test_num_skipped"]
    assert len(names) == len(state.sources) + 2
    assert all(n.startswith("test_") for n in names)
