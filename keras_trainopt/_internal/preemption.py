"""SIGTERM, the preemption notice, turned into a request seen between steps.

Kubernetes, SLURM and the clouds' spot and preemptible machines announce
the end of a job with SIGTERM and kill it (SIGKILL) after a grace period
(30 s by default on Kubernetes). `SigtermWatch` replaces the SIGTERM
handler while one `fit` runs: the handler only records the request, and
the training loop acts on it at its next step boundary (it writes a backup
and ends the run), as TensorFlow's
`tf.distribute.experimental.PreemptionCheckpointHandler` does.

The handler is installed from the main thread only (Python delivers
signals there) and the previous one is put back when the watch stops. If
`fit` raised, so that the watch was never stopped, a SIGTERM that arrives
later finds no `fit` of the watch on the stack: the handler puts the
previous handler back and hands it the signal, so the process ends as it
would have. A second SIGTERM while a request waits does the same (an
impatient operator can still end the process at once).
"""

import os
import signal
import threading

from keras_trainopt._internal import running_fit

_ACTIVE = {}  # "watch": the SigtermWatch whose handler is installed


def _handler(signum, frame):
    watch = _ACTIVE.get("watch")
    if (
        watch is None
        or watch.requested
        or not running_fit.is_running(watch.running, watch.model, frame)
    ):
        _pass_on(signum, frame)
        return
    watch.requested = True


def _pass_on(signum, frame):
    """Puts the previous handler back and gives it this signal."""
    watch = _ACTIVE.pop("watch", None)
    previous = signal.SIG_DFL if watch is None else watch.previous
    signal.signal(signal.SIGTERM, previous)
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        os.kill(os.getpid(), signal.SIGTERM)
    # SIG_IGN: ignored, as before


class SigtermWatch:
    """Records a SIGTERM for the training loop of one `fit`.

    Args:
        model: the model whose `fit` runs.
        running: `running_fit.find(model)`'s result for that `fit`.
    """

    def __init__(self, model, running):
        self.model = model
        self.running = running
        self.requested = False
        self.previous = None
        self.installed = False

    def start(self):
        """Installs the handler; False (and nothing done) off the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return False
        current = signal.getsignal(signal.SIGTERM)
        stale = _ACTIVE.get("watch")
        if current is _handler and stale is not None:
            self.previous = stale.previous  # a fit that raised left it
        else:  # None: a handler not installed from Python; treat as default
            self.previous = signal.SIG_DFL if current is None else current
        signal.signal(signal.SIGTERM, _handler)
        _ACTIVE["watch"] = self
        self.installed = True
        return True

    def stop(self):
        """Puts the previous handler back (if this watch's is installed)."""
        if not self.installed:
            return
        self.installed = False
        if _ACTIVE.get("watch") is self:
            del _ACTIVE["watch"]
            if signal.getsignal(signal.SIGTERM) is _handler:
                signal.signal(signal.SIGTERM, self.previous)
