"""The `keras-trainopt` command line (also `python -m keras_trainopt`).

`--help` and argument errors answer before anything heavy is imported:
Keras, its backend and matplotlib load only when a command runs.
"""

import argparse
import contextlib
import importlib.util
import os
import re
import sys

# A line of native (C++) logging: absl's notice that it is not set up yet,
# or one absl/glog-style record, e.g.
# "I0000 00:00:1796555070.629229   32293 cudart_stub.cc:31] Could not ...".
_NATIVE_LOG_LINE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IWEF]\d{4} [\d:.]+ +\d+ [^ \]]+:\d+\] "
)


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-trainopt",
        description="Keras 3 callbacks that babysit training.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="train a small network on the bundled digits data",
        description="Train a small network on scikit-learn's bundled digits "
        "with nesterov_sgd and StepDecay; write TensorBoard logs and a report.",
    )
    demo.add_argument(
        "--epochs", type=_positive_int, default=None,
        help="training epochs (default 30, or 6 with --quick)",
    )
    demo.add_argument(
        "--logdir", default="runs",
        help="parent folder of the run folder (default ./runs)",
    )
    demo.add_argument(
        "--quick", action="store_true", help="a short run for smoke tests"
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    report = commands.add_parser(
        "report",
        help="write an HTML report of the TensorBoard logs under LOGDIR",
        description="Read every TensorBoard run under LOGDIR (recursively) "
        "and write one self-contained HTML file: the TrainingDoctor's "
        "advice, the monitors' findings, logged results and the charts.",
    )
    report.add_argument("logdir", metavar="LOGDIR",
                        help="folder of TensorBoard event files")
    report.add_argument(
        "-o", "--output", default=None,
        help="the HTML file to write (default LOGDIR/report.html)",
    )
    return parser


@contextlib.contextmanager
def _without_native_logs():
    """Drops native log lines written to stderr (file descriptor 2) inside.

    TensorFlow's libraries log through absl before TensorFlow reads
    `TF_CPP_MIN_LOG_LEVEL` ("Could not find cuda drivers on your machine"
    on a machine without a GPU, once per library), so the variable cannot
    silence those: they are caught here, while TensorFlow is imported.
    Everything else written meanwhile (Python warnings, say) is passed on.
    """
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            text = caught.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True)
                    if not _NATIVE_LOG_LINE.match(line)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


def _import_quietly(*modules):
    """Imports `modules` and TensorFlow, if installed, without its C++ logs.

    TensorFlow gets imported by TensorBoard's event-file reader and writer
    wherever it is installed, whatever the Keras backend, so it is imported
    here, where its start-up chatter can be caught. The logs are dropped
    only when the user has not set `TF_CPP_MIN_LOG_LEVEL`: one who has,
    asked for them.
    """
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        quiet = contextlib.nullcontext()
    else:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # the later C++ logs too
        quiet = _without_native_logs()
    with quiet:
        if importlib.util.find_spec("tensorflow") is not None:
            try:
                importlib.import_module("tensorflow")
            except ImportError:  # as TensorBoard does: it goes without
                pass
        for module in modules:
            importlib.import_module(module)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        _import_quietly("keras_trainopt.demo")
        from keras_trainopt.demo import run_demo

        epochs = args.epochs or (6 if args.quick else 30)
        run_demo(epochs=epochs, logdir=args.logdir, seed=args.seed)
    elif args.command == "report":
        _import_quietly("keras_trainopt.reporting")
        from keras_trainopt.reporting import write_report

        try:
            path = write_report(args.logdir, args.output)
        except ValueError as error:  # a bad LOGDIR: one line, no traceback
            message = str(error).replace("`log_dir`", "LOGDIR")
            print(f"keras-trainopt report: error: {message}", file=sys.stderr)
            return 2
        except ImportError as error:
            print(f"keras-trainopt report: error: {error}", file=sys.stderr)
            return 1
        print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
