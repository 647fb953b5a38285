"""Per-trial reports: the console line, the HParams session, the statuses."""

import os

import keras
import keras_tuner
import pytest
from keras_tuner.engine import trial as trial_module
from tensorboard.plugins.hparams import metadata as hparams_metadata

from keras_trainopt.tuning import SearchSpace
from keras_trainopt.tuning import divergence
from keras_trainopt.tuning.search_log import SearchLog
from tests import tb

ROW = {"stage": "coarse", "trial": "03", "score": 0.91234, "best_epoch": 1,
       "status": "completed", "schedule": "exponential",
       "learning_rate": 0.05, "step_factor": None, "step_every": None,
       "exponential_decay": 0.2, "inverse_time_decay": None, "l2": None,
       "dropout": 0.1}
HISTORY = {"loss": [0.9, 0.4], "val_accuracy": [0.8, 0.91234],
           "diverged": [0.0, 0.0]}


def test_a_trial_prints_one_line_through_keras_io(capsys):
    SearchLog(None, verbose=1).trial_ended(ROW, HISTORY)
    assert capsys.readouterr().out == (
        "coarse trial 03: completed, score 0.9123, HyperparameterConfig("
        "schedule='exponential', learning_rate=0.05, exponential_decay=0.2, "
        "dropout=0.1)\n")
    SearchLog(None, verbose=0).trial_ended(ROW, HISTORY)
    keras.config.disable_interactive_logging()  # Keras sends it to absl
    try:
        SearchLog(None, verbose=1).trial_ended(ROW, HISTORY)
    finally:
        keras.config.enable_interactive_logging()
    assert capsys.readouterr().out == ""


def test_a_trial_writes_its_session_and_the_experiment_its_metrics(tmp_path):
    log = SearchLog(str(tmp_path), verbose=0)
    log.trial_ended(ROW, HISTORY)
    log.trial_ended(ROW | {"trial": "04", "score": None},
                    {"loss": [1.0], "val_loss": [2.0]})
    assert tb.runs(tmp_path) == ["coarse-03", "coarse-04"]
    content = tb.load(os.path.join(tmp_path, "coarse-03")).PluginTagToContent(
        "hparams")
    info = hparams_metadata.parse_session_start_info_plugin_data(
        content["_hparams_/session_start_info"])
    assert set(info.hparams) == {"stage", "schedule", "learning_rate",
                                 "exponential_decay", "dropout"}
    assert info.hparams["exponential_decay"].number_value == pytest.approx(0.2)
    assert tb.tags(os.path.join(tmp_path, "coarse-03")) >= {
        "loss", "val_accuracy", "score"}
    assert "diverged" not in tb.tags(os.path.join(tmp_path, "coarse-03"))
    assert log.metrics == ["loss", "val_accuracy", "val_loss"]
    log.write_experiment(SearchSpace(epochs=4, schedule="exponential"))
    experiment = hparams_metadata.parse_experiment_plugin_data(
        tb.load(str(tmp_path)).PluginTagToContent("hparams")[
            "_hparams_/experiment"])
    assert [m.name.tag for m in experiment.metric_infos] == [
        "score", "loss", "val_accuracy", "val_loss"]
    names = [h.name for h in experiment.hparam_infos]
    assert sorted(names) == sorted(["stage", "learning_rate",
                                    "exponential_decay", "l2", "dropout",
                                    "schedule"])


def make_trial(status, diverged=None):
    trial = trial_module.Trial(keras_tuner.HyperParameters(), trial_id="0",
                               status=status)
    if diverged is not None:
        trial.metrics.update("diverged", diverged, step=0)
    return trial


@pytest.mark.parametrize(
    "status, diverged, expected",
    [("COMPLETED", None, "completed"), ("COMPLETED", 0.0, "completed"),
     ("COMPLETED", 1.0, "diverged"), ("FAILED", None, "failed"),
     ("INVALID", 1.0, "failed")],
)
def test_status_of_a_finished_trial(status, diverged, expected):
    assert divergence.status(make_trial(status, diverged)) == expected
