"""Prediction ensembles: a model that averages members, seed ensembles."""

from keras_trainopt.ensembles.ensemble_model import EnsembleModel
from keras_trainopt.ensembles.seed_ensemble import fit_seed_ensemble

__all__ = ["EnsembleModel", "fit_seed_ensemble"]
