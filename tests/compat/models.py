"""The model zoo of the compatibility matrix (issue 19).

Each factory returns a `Case`: a compiled model, NumPy training and
validation data, the probe batch for the activation monitors and the name of
the accuracy metric in the logs. Every factory seeds Keras itself, so two
calls build models with the same initial weights (the references that train
a second model, e.g. BackupAndRestore's uninterrupted run, rely on it).

The data is a 3-class problem on 4 features (two inputs, 4 + 2 features,
for the multi-input model; 32x32x3 images for the backbones): 48 training
and 16 validation samples, batch 16, so an epoch is 3 updates.
"""

import dataclasses

import keras
import numpy as np
from keras import ops

N_TRAIN = 48
N_VAL = 16
BATCH = 16
STEPS_PER_EPOCH = N_TRAIN // BATCH
CLASSES = 3
LR0 = 0.05
IMAGE = (32, 32, 3)

BACKEND = keras.backend.backend()


@dataclasses.dataclass
class Case:
    name: str
    model: keras.Model
    x: object
    y: object
    x_val: object
    y_val: object
    metric: str = "accuracy"  # the accuracy key in the logs
    # the optimizers the train step applies (model.optimizer unless several)
    optimizers: list = None
    image: bool = False

    def __post_init__(self):
        if self.optimizers is None:
            self.optimizers = [self.model.optimizer]

    @property
    def probe(self):
        return self.x_val

    @property
    def validation_data(self):
        return (self.x_val, self.y_val)


def _labels(x, seed):
    w = np.random.default_rng(seed + 100).normal(size=(x.shape[-1], CLASSES))
    return np.argmax(x @ w, axis=-1).astype("int32")


def vector_data(seed=0, features=4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N_TRAIN + N_VAL, features)).astype("float32")
    y = _labels(x, seed)
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def image_data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, size=(N_TRAIN + N_VAL, *IMAGE)).astype("float32")
    y = _labels(x.reshape(len(x), -1)[:, :16], seed)
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def _compile(model, optimizer=None):
    model.compile(
        optimizer or keras.optimizers.SGD(LR0, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def _vector_case(name, model, **kwargs):
    x, y, x_val, y_val = vector_data()
    return Case(name, model, x, y, x_val, y_val, **kwargs)


# -- the plain kinds ---------------------------------------------------------


def sequential():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu", name="hidden"),
            keras.layers.Dense(CLASSES, activation="softmax", name="out"),
        ]
    )
    return _vector_case("sequential", _compile(model))


def functional():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="tanh", name="hidden")(inputs)
    outputs = keras.layers.Dense(CLASSES, activation="softmax", name="out")(hidden)
    return _vector_case("functional", _compile(keras.Model(inputs, outputs)))


class Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(8, activation="relu", name="hidden")
        self.out = keras.layers.Dense(CLASSES, activation="softmax", name="out")

    def call(self, x):
        return self.out(self.hidden(x))


def subclassed():
    """Built by a call on a batch, as the Keras guides advise."""
    keras.utils.set_random_seed(0)
    model = Subclassed()
    model(np.zeros((1, 4), "float32"))
    return _vector_case("subclassed", _compile(model))


def subclassed_unbuilt():
    """Never called before `fit` (`fit` builds it at its first step)."""
    keras.utils.set_random_seed(0)
    return _vector_case("subclassed_unbuilt", _compile(Subclassed()))


def multi_io():
    """Two named inputs, two outputs returned as a dict, one with accuracy."""
    keras.utils.set_random_seed(0)
    a = keras.Input((4,), name="a")
    b = keras.Input((2,), name="b")
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(
        keras.layers.Concatenate(name="concat")([a, b])
    )
    cls = keras.layers.Dense(CLASSES, activation="softmax", name="cls")(hidden)
    reg = keras.layers.Dense(1, name="reg")(hidden)
    model = keras.Model({"a": a, "b": b}, {"cls": cls, "reg": reg})
    model.compile(
        keras.optimizers.SGD(LR0, momentum=0.9),
        loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"},
        metrics={"cls": ["accuracy"]},
    )
    x, y, x_val, y_val = vector_data(features=6)

    def split(x6, labels):
        return (
            {"a": x6[:, :4], "b": x6[:, 4:]},
            {"cls": labels, "reg": x6[:, :1] - x6[:, 4:5]},
        )

    x, y = split(x, y)
    x_val, y_val = split(x_val, y_val)
    return Case("multi_io", model, x, y, x_val, y_val, metric="cls_accuracy")


def mixed_precision():
    """`mixed_float16`: compile wraps the optimizer in a LossScaleOptimizer."""
    keras.utils.set_random_seed(0)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        inputs = keras.Input((4,))
        hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
        logits = keras.layers.Dense(CLASSES, name="logits")(hidden)
        outputs = keras.layers.Activation(
            "softmax", dtype="float32", name="out"
        )(logits)
        model = _compile(keras.Model(inputs, outputs))
    finally:
        keras.config.set_dtype_policy(previous)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    return _vector_case("mixed_precision", model)


# -- a custom train_step ------------------------------------------------------


class CustomStep(keras.Model):
    """A Functional model with its own `train_step` (the Keras guide's), per
    backend: TensorFlow with a GradientTape, JAX stateless."""

    def train_step(self, *args):
        if BACKEND == "jax":
            return self._jax_train_step(*args)
        return self._tf_train_step(*args)

    def _tf_train_step(self, data):
        import tensorflow as tf

        x, y = data
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
            else:
                metric.update_state(y, y_pred)
        return self.get_metrics_result()

    def _jax_train_step(self, state, data):
        import jax

        trainable, non_trainable, optimizer_vars, metric_vars = state
        x, y = data

        def loss_fn(trainable, non_trainable):
            y_pred, non_trainable = self.stateless_call(
                trainable, non_trainable, x, training=True
            )
            loss = ops.mean(
                keras.losses.sparse_categorical_crossentropy(y, y_pred)
            )
            return loss, (y_pred, non_trainable)

        (loss, (y_pred, non_trainable)), grads = jax.value_and_grad(
            loss_fn, has_aux=True
        )(trainable, non_trainable)
        trainable, optimizer_vars = self.optimizer.stateless_apply(
            optimizer_vars, grads, trainable
        )
        logs, new_metric_vars, start = {}, [], 0
        for metric in self.metrics:
            end = start + len(metric.variables)
            own = metric_vars[start:end]
            if metric.name == "loss":
                own = metric.stateless_update_state(own, loss)
            else:
                own = metric.stateless_update_state(own, y, y_pred)
            result = metric.stateless_result(own)
            if isinstance(result, dict):
                logs.update(result)
            else:
                logs[metric.name] = result
            new_metric_vars += list(own)
            start = end
        return logs, (trainable, non_trainable, optimizer_vars, new_metric_vars)


def custom_train_step():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    outputs = keras.layers.Dense(CLASSES, activation="softmax", name="out")(hidden)
    model = _compile(CustomStep(inputs, outputs))
    return _vector_case("custom_train_step", model)


# -- two optimizers (GAN-like) ------------------------------------------------


class TwoOptimizers(keras.Model):
    """A feature extractor and a head, each with its own optimizer, compiled
    as GANs are: `compile(head_optimizer, body_optimizer)` calls
    `super().compile()`. TensorFlow only (see `two_optimizers`)."""

    def __init__(self, body, head, **kwargs):
        super().__init__(**kwargs)
        self.body = body
        self.head = head

    def call(self, x, training=False):
        return self.head(self.body(x, training=training), training=training)

    def compile(self, head_optimizer, body_optimizer):
        super().compile(loss="sparse_categorical_crossentropy",
                        metrics=["accuracy"])
        self.head_optimizer = head_optimizer
        self.body_optimizer = body_optimizer

    def train_step(self, data):
        import tensorflow as tf

        x, y = data
        with tf.GradientTape(persistent=True) as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred)
        head_vars = self.head.trainable_variables
        body_vars = self.body.trainable_variables
        self.head_optimizer.apply(tape.gradient(loss, head_vars), head_vars)
        self.body_optimizer.apply(tape.gradient(loss, body_vars), body_vars)
        del tape
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
            else:
                metric.update_state(y, y_pred)
        return self.get_metrics_result()


def two_optimizers():
    keras.utils.set_random_seed(0)
    body = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu")],
        name="body",
    )
    head = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(CLASSES, activation="softmax")],
        name="head",
    )
    model = TwoOptimizers(body, head)
    model.build((None, 4))
    head_opt = keras.optimizers.SGD(LR0, momentum=0.9)
    body_opt = keras.optimizers.SGD(LR0 / 2, momentum=0.9)
    model.compile(head_opt, body_opt)
    case = _vector_case("two_optimizers", model, optimizers=[head_opt, body_opt])
    return case


# -- nested backbones ---------------------------------------------------------


def mobilenet_backbone():
    return keras.applications.MobileNetV3Small(
        input_shape=IMAGE,
        include_top=False,
        weights=None,
        pooling="avg",
        include_preprocessing=True,
    )


def backbone(trainable_backbone=True):
    """`Sequential([Input, MobileNetV3Small(weights=None), Dense])`, the
    transfer-learning shape of issue 19 item 1."""
    keras.utils.set_random_seed(0)
    base = mobilenet_backbone()
    base.trainable = trainable_backbone
    model = keras.Sequential(
        [
            keras.Input(IMAGE),
            base,
            keras.layers.Dense(CLASSES, activation="softmax", name="out"),
        ]
    )
    x, y, x_val, y_val = image_data()
    return Case("backbone", _compile(model), x, y, x_val, y_val, image=True)


def keras_hub_backbone_layer():
    """A small KerasHub `ResNetBackbone` built from its config (no preset)."""
    import keras_hub

    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64],
        stackwise_num_blocks=[1],
        stackwise_num_strides=[1],
        block_type="basic_block",
        use_pre_activation=False,
        image_shape=IMAGE,
    )


def keras_hub():
    keras.utils.set_random_seed(0)
    base = keras_hub_backbone_layer()
    inputs = keras.Input(IMAGE)
    features = keras.layers.GlobalAveragePooling2D(name="pool")(base(inputs))
    outputs = keras.layers.Dense(CLASSES, activation="softmax", name="out")(
        features
    )
    x, y, x_val, y_val = image_data()
    x, x_val = x / 255.0, x_val / 255.0
    model = _compile(keras.Model(inputs, outputs))
    return Case("keras_hub", model, x, y, x_val, y_val, image=True)


FACTORIES = {
    "sequential": sequential,
    "functional": functional,
    "subclassed": subclassed,
    "subclassed_unbuilt": subclassed_unbuilt,
    "multi_io": multi_io,
    "custom_train_step": custom_train_step,
    "two_optimizers": two_optimizers,
    "mixed_precision": mixed_precision,
    "backbone": backbone,
    "keras_hub": keras_hub,
}
