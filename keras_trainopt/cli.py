"""The `keras-trainopt` command line (also `python -m keras_trainopt`)."""

import argparse
import os
import sys


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


def main(argv=None):
    args = build_parser().parse_args(argv)
    # Keep TensorFlow's C++ start-up chatter out of the demo's output.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.command == "demo":
        from keras_trainopt.demo import run_demo

        epochs = args.epochs or (6 if args.quick else 30)
        run_demo(epochs=epochs, logdir=args.logdir, seed=args.seed)
    elif args.command == "report":
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
