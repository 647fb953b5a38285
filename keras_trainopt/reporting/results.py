"""Final numbers of a run (test accuracy, EMA, ensembles) logged to TensorBoard.

The monitors log how training went; what came out of it, the test accuracy of
the final weights, of their moving average, of a five-member ensemble, is
measured after `fit` and usually only printed. `log_results` writes those
numbers next to the training logs, as scalars `results/<name>` in the run
`<log_dir>/results`, so TensorBoard and `write_report` show them with the
curves that produced them.
"""

import numbers
import os

from keras_trainopt._internal import validation
from keras_trainopt.reporting import tags
from keras_trainopt.reporting import tensorboard

RUN = "results"
PREFIX = tags.RESULTS_PREFIX


def log_results(
    log_dir: str | os.PathLike,
    results: dict[str, float],
    step: int = 0,
) -> None:
    """Writes `{name: number}` as TensorBoard scalars `results/<name>`.

    Name results `<metric>/<variant>` ("test_accuracy/final",
    "test_accuracy/ema", "test_accuracy/ensemble_of_5"): `write_report`
    draws one bar chart per metric, the variants side by side. Logging the
    same name again at a later `step` adds a point; reports show the latest.
    In a multi-worker run only the chief writes.

    >>> import tempfile
    >>> from keras_trainopt.reporting import log_results
    >>> log_dir = tempfile.mkdtemp()
    >>> log_results(log_dir, {"test_accuracy/final": 0.962,
    ...                       "test_accuracy/ema": 0.971})
    >>> from keras_trainopt.reporting import write_report
    >>> with open(write_report(log_dir)) as f:
    ...     "<td>test_accuracy/ema</td><td>0.971</td>" in f.read()
    True

    Args:
        log_dir: TensorBoard folder (the run is `<log_dir>/results`).
        results: dict of name -> finite number; names are strings, "/"
            groups them.
        step: the step the values are logged at (an integer >= 0).

    Returns:
        None.

    Reference: TensorBoard's scalar plugin (the values are ordinary scalar
    summaries, so any TensorBoard tool reads them).
    """
    log_dir = validation.check_path("log_dir", log_dir)
    if not isinstance(results, dict) or not results:
        raise TypeError(
            "`results` must be a non-empty dict of name -> number. "
            f"Received: results={results!r}"
        )
    for name, value in results.items():
        if not isinstance(name, str) or not name.strip("/"):
            raise TypeError(
                "`results` must be a dict of name -> number with non-empty "
                f"string names. Received: results={results!r}"
            )
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(
                "`results` must be a dict of name -> number. Received: "
                f"results={results!r} ({name!r} is of type "
                f"{type(value).__name__})"
            )
        validation.check_real(f"results[{name!r}]", value)
    # TensorBoard stores steps as int64
    step = validation.check_int("step", step, low=0, high=2**63 - 1)
    writer = tensorboard.open_run(log_dir, RUN)
    try:
        if writer is not None:
            for name, value in results.items():
                writer.scalar(tags.result(name.strip("/")), float(value), step)
    finally:
        tensorboard.close_run(writer)
