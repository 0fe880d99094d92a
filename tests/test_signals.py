"""keras_resnet._signals: a signal during fit is raised at the next step boundary."""

import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_resnet._signals import deferred
from keras_resnet.training.callbacks import StopOnSignal

X = np.zeros((64, 4), "float32")
Y = np.zeros((64,), "int32")


class _Record(keras.callbacks.Callback):
    """Sends SIGINT to this process inside batch 2's step, and records the batches that end."""

    def __init__(self):
        super().__init__()
        self.ended = []

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 2:
            os.kill(os.getpid(), signal.SIGINT)

    def on_train_batch_end(self, batch, logs=None):
        self.ended.append(batch)


def _model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


def test_a_sigint_in_a_step_is_raised_after_it_and_the_handler_is_put_back():
    before = signal.getsignal(signal.SIGINT)
    record = _Record()
    with pytest.raises(KeyboardInterrupt), deferred():
        _model().fit(X, Y, batch_size=8, epochs=2, verbose=0, callbacks=[record, StopOnSignal()])
    assert record.ended == [0, 1, 2]  # batch 2 finished its step; nothing after it ran
    assert signal.getsignal(signal.SIGINT) is before


def test_without_a_signal_fit_runs_to_its_end():
    record = _Record()
    record.on_train_batch_begin = lambda batch, logs=None: None
    with deferred():
        _model().fit(X, Y, batch_size=8, epochs=2, verbose=0, callbacks=[record, StopOnSignal()])
    assert len(record.ended) == 16


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_after_the_work_ends_the_process_with_the_work_s_code(signum):
    """`keras-resnet` (console_main) after its command returned: a signal during the
    interpreter's shutdown gives the command's exit code, not -2 / -15 (seen once with
    SIGTERM on a finished multi-worker job)."""
    script = (
        "import os, signal, time\n"
        "from keras_resnet._signals import ignore_signals_from_now\n"
        "ignore_signals_from_now()\n"
        f"os.kill(os.getpid(), {int(signum)})\n"
        "time.sleep(0.5)\n"
        "raise SystemExit(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], timeout=25, capture_output=True)
    assert done.returncode == 3, done.stderr
