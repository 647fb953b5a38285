"""Weight averages: the pure rules (`formulas`), the in-step engine
(`in_step`) and BatchNorm recomputation."""

from keras_trainopt.averaging.batchnorm import recompute_batchnorm_statistics

__all__ = ["recompute_batchnorm_statistics"]
