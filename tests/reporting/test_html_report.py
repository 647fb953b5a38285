"""`write_report`: logs written with known values, the HTML read back."""

import base64
import os
import re
import struct

import keras
import numpy as np
import pytest

from keras_trainopt import TrainingDoctor
from keras_trainopt.reporting import close_run
from keras_trainopt.reporting import log_results
from keras_trainopt.reporting import open_run
from keras_trainopt.reporting import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALL_CHARTS = ("results", "batch-loss", "epoch-loss", "accuracy",
              "learning-rate", "update-ratios", "activations")


def write(log_dir, run, scalars=None, texts=None):
    """Writes `{tag: [(step, value)]}` and `{tag: text}` with our RunWriter."""
    writer = open_run(str(log_dir), run)
    for tag, points in (scalars or {}).items():
        writer.scalars(tag, [s for s, _ in points], [v for _, v in points])
    for tag, text in (texts or {}).items():
        writer.text(tag, text, 0)
    close_run(writer)


def full_logs(log_dir):
    """A run folder as the demo leaves it, with made-up numbers."""
    epochs = range(4)
    write(log_dir, "train", {
        "epoch_accuracy": [(e, 0.7 + 0.07 * e) for e in epochs],
        "epoch_loss": [(e, 1.0 / (e + 1)) for e in epochs],
        "epoch_learning_rate": [(e, 0.1 * 0.5 ** e) for e in epochs],
    })
    write(log_dir, "validation", {
        "epoch_accuracy": [(e, 0.68 + 0.05 * e) for e in epochs],
        "epoch_loss": [(e, 1.1 / (e + 1)) for e in epochs],
    })
    write(log_dir, "monitors", {
        "loss_monitor/batch_loss": [(s, 2.3 * 0.97 ** s) for s in range(200)],
        "loss_monitor/learning_rate": [(s, 0.1 * 0.5 ** (s // 50))
                                       for s in range(200)],
        "generalization_gap": [(e, 0.02 * e) for e in epochs],
        "update_ratio_by_layer/hidden": [(s, 2e-3) for s in range(0, 200, 10)],
        "update_ratio_by_layer/output": [(s, 3e-2) for s in range(0, 200, 10)],
        "activations/hidden/dead_fraction": [(e, 0.1) for e in epochs],
        "activations/squash/saturated_fraction": [(e, 0.6) for e in epochs],
        "activations/hidden/mean": [(e, 0.3) for e in epochs],
    }, {
        "doctor/advice": "- **problem**: layer output: update ratio 3.0e-02 "
                         "(healthy ~1e-3) is high\n- **warning**: layer squash"
                         ": 60% saturated",
        "loss_monitor/diagnosis": "**good**: the loss fell",
        "overfitting_monitor/diagnosis": "**good_fit**: epoch 4: gap 0.06",
    })
    log_results(str(log_dir), {"test_accuracy/final": 0.9625,
                               "test_accuracy/ema": 0.9712,
                               "test_loss/final": 0.125})


def sections(page):
    """{section id: its HTML}."""
    return dict(re.findall(r'<section id="([\w-]+)">(.*?)</section>', page,
                           flags=re.S))


def pngs(fragment):
    return [base64.b64decode(data) for data in
            re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"',
                       fragment)]


def png_size(data):
    assert data.startswith(PNG_MAGIC)
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_every_section_has_a_chart_and_the_texts(tmp_path):
    full_logs(tmp_path)
    path = write_report(tmp_path)
    assert path == os.path.abspath(tmp_path / "report.html")
    page = open(path, encoding="utf-8").read()
    found = sections(page)
    assert list(found) == ["advice", "findings", *ALL_CHARTS]
    for name in ALL_CHARTS:
        (image,) = pngs(found[name])
        width, height = png_size(image)
        assert width == 850 and height > 100, name
    assert "not-recorded" not in page

    # The advice, rendered: one list item per line, coloured by severity.
    assert ('<li class="problem"><strong>problem</strong>: layer output: '
            "update ratio 3.0e-02 (healthy ~1e-3) is high</li>"
            in found["advice"])
    assert '<li class="warning"><strong>warning</strong>: layer squash' in (
        found["advice"])
    assert "<dt>LossMonitor</dt>" in found["findings"]
    assert "<strong>good_fit</strong>: epoch 4: gap 0.06" in found["findings"]
    assert "doctor/advice" not in found["findings"]

    # An uncharted tag is listed, charted ones are not.
    other = page.split("<details>")[1]
    assert "activations/hidden/mean" in other
    assert "epoch_accuracy" not in other


def test_results_table_holds_the_logged_numbers(tmp_path):
    full_logs(tmp_path)
    page = open(write_report(tmp_path), encoding="utf-8").read()
    rows = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td></tr>",
                      sections(page)["results"])
    assert {name: float(value) for name, value in rows} == {
        "test_accuracy/final": 0.9625,
        "test_accuracy/ema": 0.9712,
        "test_loss/final": 0.125,
    }


def test_sections_without_tags_are_left_out(tmp_path):
    write(tmp_path, "monitors", {
        "loss_monitor/batch_loss": [(s, 1.0 / (s + 1)) for s in range(30)],
    })
    page = open(write_report(tmp_path), encoding="utf-8").read()
    assert list(sections(page)) == ["batch-loss"]
    assert page.count("data:image/png;base64,") == 1
    not_recorded = re.search(r"id='not-recorded'>(.*?)</p>", page).group(1)
    assert "Update ratio per layer" in not_recorded
    assert "What to do (TrainingDoctor)" in not_recorded
    assert "<details>" not in page  # no other tags either


def test_texts_only_and_a_diverged_loss(tmp_path):
    write(tmp_path, "monitors", {
        "loss_monitor/batch_loss": [(0, 2.0), (1, 5.0), (2, float("inf")),
                                    (3, float("nan"))],
    }, {"doctor/advice": "- **problem**: <b>diverged</b> & stopped"})
    page = open(write_report(tmp_path), encoding="utf-8").read()
    found = sections(page)
    assert list(found) == ["advice", "batch-loss"]
    assert "not finite (NaN or inf) from step 2" in found["batch-loss"]
    (image,) = pngs(found["batch-loss"])
    assert image.startswith(PNG_MAGIC)
    # Text from the logs is escaped, never markup; the page loads nothing.
    assert "&lt;b&gt;diverged&lt;/b&gt; &amp; stopped" in found["advice"]
    assert "<b>" not in page and "<script" not in page
    assert not re.search(r'(src|href)="(?!data:)', page)


def test_a_folder_of_run_folders_names_each(tmp_path):
    for name, accuracy in (("run-a", 0.91), ("run-b", 0.95)):
        write(tmp_path / name, "train", {"epoch_accuracy": [(0, accuracy)]})
        log_results(str(tmp_path / name), {"test_accuracy/final": accuracy})
    output = tmp_path / "out" / "all.html"
    assert write_report(str(tmp_path), output=output) == str(output)
    page = output.read_text(encoding="utf-8")
    rows = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td>",
                      page)
    assert rows == [("run-a", "test_accuracy/final", "0.91"),
                    ("run-b", "test_accuracy/final", "0.95")]
    assert "<code>run-a/train</code>" in page


def test_a_real_fit_with_the_doctor(tmp_path):
    pytest.importorskip("tensorflow")  # Keras' TensorBoard writes with tf.summary
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 8)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int32")
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, activation="relu", name="hidden"),
        keras.layers.Dense(2, activation="softmax", name="out"),
    ])
    model.compile(keras.optimizers.SGD(0.1),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    doctor = TrainingDoctor(str(tmp_path), x_probe=x[:32], every=1, verbose=0)
    doctor.monitors["update_ratio"].every = 2
    model.fit(x, y, validation_split=0.25, epochs=3, batch_size=16, verbose=0,
              callbacks=[doctor, keras.callbacks.TensorBoard(str(tmp_path))])
    page = open(write_report(tmp_path), encoding="utf-8").read()
    found = sections(page)
    assert doctor.advice
    for advice in doctor.advice:
        assert f"<strong>{advice.severity}</strong>: " in found["advice"]
        assert advice.message.split(":")[0] in found["advice"]
    assert set(found) >= {"findings", "batch-loss", "epoch-loss", "accuracy",
                          "learning-rate", "update-ratios", "activations"}
    assert "results" not in found
    for name in ("batch-loss", "accuracy", "update-ratios", "activations"):
        assert pngs(found[name])[0].startswith(PNG_MAGIC)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="`log_dir` must be an existing "
                       "folder. Received: log_dir="):
        write_report(str(tmp_path / "missing"))
    (tmp_path / "notes.txt").write_text("no events here")
    with pytest.raises(ValueError, match="`log_dir` must hold TensorBoard "
                       "event files"):
        write_report(tmp_path)
    with pytest.raises(TypeError, match="Received: log_dir=None"):
        write_report(None)
    with pytest.raises(TypeError, match="Received: output=3"):
        write_report(tmp_path, output=3)


# -- found by fuzzing (issue 7) ------------------------------------------------


def test_output_must_be_a_file_path(tmp_path):
    writer = open_run(str(tmp_path), "monitors")
    writer.scalars("loss_monitor/batch_loss", range(3), [3.0, 2.0, 1.0])
    close_run(writer)
    # before: IsADirectoryError, after the charts were drawn
    for output in ("", tmp_path):
        with pytest.raises(ValueError, match=r"`output` must be"):
            write_report(tmp_path, output=output)
