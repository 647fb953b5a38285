"""Weight averages: the pure update rules and BatchNorm recomputation."""

from keras_trainopt.averaging.batchnorm import recompute_batchnorm_statistics

__all__ = ["recompute_batchnorm_statistics"]
