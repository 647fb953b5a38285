"""Verbose messages, printed the way Keras' own callbacks print theirs.

Keras routes its callbacks' messages through `io_utils.print_msg`: to stdout
while interactive logging is on (the default), to absl logging after
`keras.config.disable_interactive_logging()`. Keras 3 does not export
`print_msg`, so this is the one module that reaches into `keras.src` for it;
every verbose message of the library goes through `print_msg` below.
"""

from keras.src.utils import io_utils


def print_msg(message):
    """Prints `message` as Keras' callbacks do (stdout, or absl logging).

    Args:
        message: the text, e.g. `"\\nEpoch 5: StepDecay setting learning rate
            to 0.001."`.
    """
    io_utils.print_msg(message)
