"""TensorFlow's native (C++) log lines, kept out of the user's way without hiding errors.

TensorFlow, its converter and LiteRT write informational lines straight to file
descriptor 2 from C++ (oneDNN notices at import, "Created TensorFlow Lite
XNNPACK delegate", the converter's quantisation flags), where neither Python's
logging nor `TF_CPP_MIN_LOG_LEVEL` reaches all of them. `quiet_native_logs`
sends descriptor 2 to a temporary file for the duration of a block, then
writes back every line that is not such a notice: warnings, errors and
Python tracebacks still reach the user, after the block.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

# absl's INFO lines ("I1201 10:00:00.000000  123 file.cc:45] ..."), its notice that it
# was not initialised, and LiteRT's / the converter's informational prints.
_NOISE = re.compile(
    r"^(I\d{4} [\d:.]+\s+\d+ \S+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|INFO: (Created TensorFlow Lite|Initialized TensorFlow Lite)"
    r"|fully_quantize: \d+, inference_type: "
    r"|To enable the following instructions: .* rebuild TensorFlow"
    r")"
)


def is_noise(line: str) -> bool:
    return bool(_NOISE.match(line))


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Drops TensorFlow's native informational lines written during the block; keeps the rest."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [
                line
                for line in captured.read().decode(errors="replace").splitlines()
                if not is_noise(line)
            ]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()
