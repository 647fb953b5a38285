import math

import keras
import numpy as np

from keras_trainopt._internal import model_facts


def model(output, loss, units=10):
    net = keras.Sequential([keras.Input((4,)),
                            keras.layers.Dense(units, activation=output,
                                               name="out")])
    net.compile("sgd", loss)
    return net


def test_the_loss_and_the_output_are_read():
    facts = model_facts.describe(model(
        "softmax", keras.losses.SparseCategoricalCrossentropy(from_logits=True)))
    assert facts == {"loss": "sparse_categorical_crossentropy",
                     "from_logits": True, "output_activation": "softmax",
                     "output_layer": "out", "classes": 10,
                     "chance_loss": math.log(10)}
    facts = model_facts.describe(model(None, "categorical_crossentropy", 3))
    assert (facts["output_activation"], facts["from_logits"],
            facts["chance_loss"]) == ("linear", False, math.log(3))
    facts = model_facts.describe(model("sigmoid", "binary_crossentropy", 1))
    assert facts["chance_loss"] == math.log(2)
    assert model_facts.describe(model(None, "mse", 1))["chance_loss"] is None


def test_chance_is_the_loss_of_equal_odds():
    # an independent reference: Keras' own loss of a uniform prediction
    y = np.arange(10) % 10
    uniform = np.full((10, 10), 0.1, "float32")
    loss = keras.losses.SparseCategoricalCrossentropy()(y, uniform)
    facts = model_facts.describe(model("softmax",
                                       "sparse_categorical_crossentropy"))
    assert math.isclose(facts["chance_loss"], float(loss), rel_tol=1e-6)


def test_input_scale_and_in_model_scaling():
    assert model_facts.input_scale(np.full((4, 3), 3.0))["rms"] == 3.0
    scale = model_facts.input_scale(np.array([[np.nan, 4.0], [4.0, 4.0]]))
    assert scale == {"rms": 4.0, "non_finite": 1}
    assert model_facts.input_scale(np.arange(4)) is None  # token ids
    rescaled = keras.Sequential([keras.Input((4,)),
                                 keras.layers.Rescaling(1 / 255),
                                 keras.layers.Dense(2)])
    assert model_facts.scales_inputs(rescaled)
    assert not model_facts.scales_inputs(model("relu", "mse"))


def test_a_penalized_loss_has_no_chance_level():
    # fit's loss holds the L2 penalty too: ln(10) would be the wrong yardstick
    net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(
        10, activation="softmax",
        kernel_regularizer=keras.regularizers.L2(1.0))])
    net.compile("sgd", "sparse_categorical_crossentropy")
    facts = model_facts.describe(net)
    assert facts["classes"] == 10 and facts["chance_loss"] is None
