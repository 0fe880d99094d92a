"""quiet_native_logs: TensorFlow's C++ notices dropped, warnings and errors kept."""

import os
import sys

import pytest

from keras_resnet._logs import quiet_native_logs

NOTICES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796164859.106967    2736 port.cc:153] oneDNN custom operations are on.",
    "I1201 10:00:00.123456   12 saver.cc:99] Reading SavedModel from: /tmp/x",
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    "fully_quantize: 0, inference_type: 6, input_inference_type: INT8, output_inference_type: INT8",
]
KEPT = [
    "E1201 10:00:00.123456   12 convert.cc:10] error: failed to legalize operation",
    "W1201 10:00:00.123456   12 lite.cc:10] a real warning",
    "Traceback (most recent call last):",
]


def test_notices_are_dropped_and_everything_else_comes_back(capfd):
    with quiet_native_logs():
        for line in NOTICES + KEPT:
            os.write(2, (line + "\n").encode())  # as C++ writes: straight to descriptor 2
        print("python's own stderr", file=sys.stderr)
    lines = capfd.readouterr().err.splitlines()
    assert [line for line in lines if line in KEPT] == KEPT
    assert sorted(lines) == sorted([*KEPT, "python's own stderr"])


def test_an_error_inside_still_restores_stderr_and_shows_what_was_written(capfd):
    with pytest.raises(RuntimeError), quiet_native_logs():
        os.write(2, b"E0000 00:00:1.0 1 x.cc:1] conversion failed\n")
        raise RuntimeError("converter crashed")
    os.write(2, b"after\n")
    assert capfd.readouterr().err.splitlines() == [
        "E0000 00:00:1.0 1 x.cc:1] conversion failed",
        "after",
    ]
