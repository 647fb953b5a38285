"""HParams sessions and experiment, read back with TensorBoard's own reader."""

import math
import os

import pytest
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata

from keras_trainopt.reporting import hparams
from tests import tb


def session_info(run_dir):
    content = tb.load(run_dir).PluginTagToContent("hparams")
    return hparams_metadata.parse_session_start_info_plugin_data(
        content["_hparams_/session_start_info"])


def experiment(log_dir):
    content = tb.load(str(log_dir)).PluginTagToContent("hparams")
    return hparams_metadata.parse_experiment_plugin_data(
        content["_hparams_/experiment"])


def test_session_holds_values_finite_curves_and_score(tmp_path):
    history = {"loss": [1.0, math.nan, 0.5], "val_accuracy": [0.25, 0.5, 0.75],
               "diverged": [0.0, 0.0, 0.0]}
    written = hparams.write_session(
        str(tmp_path), "fine-03",
        {"stage": "fine", "learning_rate": 0.01, "step_every": 4, "l2": None},
        history, score=0.75, skip=("diverged",))
    assert written == ["loss", "val_accuracy"]
    run_dir = os.path.join(tmp_path, "fine-03")
    info = session_info(run_dir)
    assert info.group_name == "fine-03"
    assert info.hparams["stage"].string_value == "fine"
    assert info.hparams["learning_rate"].number_value == pytest.approx(0.01)
    assert info.hparams["step_every"].number_value == 4
    assert "l2" not in info.hparams  # None values are left out
    assert tb.scalars(run_dir, "loss") == [(0, 1.0), (2, 0.5)]  # NaN left out
    assert tb.scalars(run_dir, "val_accuracy") == [(0, 0.25), (1, 0.5),
                                                   (2, 0.75)]
    assert tb.scalars(run_dir, "score") == [(0, 0.75)]
    assert "diverged" not in tb.tags(run_dir)


@pytest.mark.parametrize("score", [None, math.inf, math.nan])
def test_no_score_is_written_when_it_is_missing_or_not_finite(tmp_path, score):
    hparams.write_session(str(tmp_path), "coarse-00", {"stage": "coarse"},
                          {"loss": [1.0]}, score=score)
    assert "score" not in tb.tags(os.path.join(tmp_path, "coarse-00"))


def test_no_log_dir_writes_nothing(tmp_path):
    assert hparams.write_session(None, "coarse-00", {"stage": "coarse"},
                                 {"loss": [1.0]}, score=1.0) == []
    hparams.write_experiment(None, {}, ["loss"])
    assert os.listdir(tmp_path) == []


def test_domains_in_order_with_their_kinds():
    result = hparams.domains(
        choices={"stage": ("coarse", "fine")},
        ranges={"step_every": (1, 5), "learning_rate": (1e-4, 1.0)},
        fixed={"l2": 1e-4}, integers={"step_every"})
    assert list(result) == ["stage", "step_every", "learning_rate", "l2"]
    assert result["stage"].values == ["coarse", "fine"]
    assert (result["step_every"].min_value,
            result["step_every"].max_value) == (1, 5)
    assert isinstance(result["step_every"].min_value, int)
    assert (result["learning_rate"].min_value,
            result["learning_rate"].max_value) == (1e-4, 1.0)
    assert result["l2"].values == [1e-4]


def test_experiment_lists_the_domains_and_the_score_first(tmp_path):
    domains = hparams.domains(choices={"schedule": ["step", "constant"]},
                              ranges={"dropout": (0.0, 0.5)})
    hparams.write_experiment(str(tmp_path), domains, ["loss", "val_loss"])
    result = experiment(tmp_path)
    infos = {h.name: h for h in result.hparam_infos}
    assert set(infos) == {"schedule", "dropout"}
    assert sorted(v.string_value for v in  # TensorBoard sorts them
                  infos["schedule"].domain_discrete.values) == ["constant",
                                                                "step"]
    assert infos["schedule"].type == api_pb2.DATA_TYPE_STRING
    assert (infos["dropout"].domain_interval.min_value,
            infos["dropout"].domain_interval.max_value) == (0.0, 0.5)
    assert [m.name.tag for m in result.metric_infos] == ["score", "loss",
                                                         "val_loss"]
