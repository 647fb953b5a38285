import numpy as np
import pytest

from keras_trainopt.diagnostics import update_ratio


def test_ratio():
    assert update_ratio([3.0, 4.0], [3.003, 4.004]) == pytest.approx(1e-3)


# -- found by fuzzing (issue 7) ------------------------------------------------


def test_arrays_of_other_shapes_are_refused():
    # before: "operands could not be broadcast together", naming nothing
    with pytest.raises(ValueError, match=r"`before` and `after` must be"):
        update_ratio(np.ones((2, 3)), [[1.0, 2.0]])


@pytest.mark.parametrize("before", ["abc", None, [1, None]])
def test_non_numbers_are_refused(before):
    # before: "could not convert string to float", naming nothing
    with pytest.raises(TypeError, match=r"`before` must be an array"):
        update_ratio(before, [1.0])
