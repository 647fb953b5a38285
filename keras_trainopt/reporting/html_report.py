"""A self-contained HTML report of the TensorBoard logs under a folder.

TensorBoard answers questions while a server runs; a report is one file to
attach to an issue, a pull request or a lab notebook, readable years later.
`write_report` reads every run under a folder (Keras's `train/` and
`validation/`, the monitors' `monitors/`, `results/`) with TensorBoard's own
reader, draws the charts of the custom-scalars layout with matplotlib and
embeds them as PNG data URIs, next to the `TrainingDoctor`'s advice, the
monitors' verdicts and the logged results. No external file, no JavaScript.

The work is split by job: `events` reads the runs, `charts` draws,
`sections` decides what each section shows, `page` frames them in HTML;
this module checks the arguments and writes the file.
"""

import os

from keras_trainopt._internal import distribute
from keras_trainopt._internal import validation
from keras_trainopt.reporting import charts as charts_module
from keras_trainopt.reporting import events
from keras_trainopt.reporting import page
from keras_trainopt.reporting import sections


def write_report(
    log_dir: str | os.PathLike,
    output: str | os.PathLike | None = None,
) -> str | None:
    """Writes an HTML report of every TensorBoard run under `log_dir`.

    The report holds, where the logs have them: the `TrainingDoctor`'s advice
    and the other monitors' verdicts (text tags), results logged with
    `log_results` (a table and bar charts), and charts of the batch loss, the
    loss per epoch, train and validation accuracy with the generalization
    gap, the learning rate, the weight-update ratio per layer (log scale,
    with the healthy band around 1e-3) and the saturated and dead fractions
    of each layer's activations. Sections without data are left out and
    named under "Not recorded". Needs matplotlib
    (`pip install 'keras-trainopt[report]'`).

    >>> import tempfile
    >>> from keras_trainopt.reporting import close_run, open_run, write_report
    >>> from keras_trainopt.reporting import tags
    >>> log_dir = tempfile.mkdtemp()
    >>> writer = open_run(log_dir, "monitors")
    >>> writer.scalars(tags.LOSS_BATCH, range(50),
    ...                [2.3 * 0.95 ** step for step in range(50)])
    >>> writer.text(tags.ADVICE, "- **ok**: training looks healthy", 0)
    >>> close_run(writer)
    >>> path = write_report(log_dir)
    >>> with open(path) as f:
    ...     page = f.read()
    >>> "training looks healthy" in page, page.count("data:image/png;base64,")
    (True, 1)

    Args:
        log_dir: folder holding TensorBoard event files, searched
            recursively (a run folder, or a folder of run folders).
        output: where to write the HTML (default `<log_dir>/report.html`).

    Returns:
        The absolute path of the report, a string; `None` on a worker other
        than the chief of a multi-worker run, which writes nothing (its
        `log_dir` holds no logs: only the chief writes them).

    Raises:
        ValueError: `log_dir` is not a folder or holds no event files.
        ImportError: matplotlib is not installed.

    Reference: cs231n, "Neural Networks Part 3: Learning and Evaluation"
    (the charts to watch while babysitting training); TensorBoard's event
    files, read with its `EventAccumulator`.
    """
    if not isinstance(log_dir, (str, os.PathLike)):
        raise TypeError(
            "`log_dir` must be a folder path (str or os.PathLike). "
            f"Received: log_dir={log_dir!r} (of type {type(log_dir).__name__})"
        )
    output = validation.check_path("output", output, allow_none=True,
                                   folder=False)
    log_dir = os.fspath(log_dir)
    if not distribute.is_chief():
        return None
    if not os.path.isdir(log_dir):
        raise ValueError(
            f"`log_dir` must be an existing folder. Received: log_dir={log_dir!r}"
        )
    charts = charts_module.Charts()  # fails early without matplotlib
    runs = events.read_runs(log_dir)
    if not runs:
        raise ValueError(
            "`log_dir` must hold TensorBoard event files (searched "
            f"recursively); it holds none. Received: log_dir={log_dir!r}"
        )
    output = os.path.abspath(
        os.fspath(output) if output is not None
        else os.path.join(log_dir, "report.html")
    )
    html = page.render(log_dir, list(runs), sections.build(runs, charts),
                       sections.uncharted_tags(runs))
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        f.write(html)
    return output
