"""`import`: what a user waits for before the model function, keras_resnet vs keras.

keras_resnet imports its names on first use, so `import keras_resnet` alone costs
nothing: each side is timed as a user gets to the model function, in a fresh
interpreter (start-up excluded), the two interleaved.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import timing
from benchmarks.common import Context, log

REPO_ROOT = Path(__file__).resolve().parent.parent
_IMPORT_CODE = "import time\nt = time.perf_counter()\n{}\nprint(time.perf_counter() - t)"
_IMPORTS = {
    "keras_resnet": "import keras_resnet; keras_resnet.ResNet50",
    "keras": "import keras; keras.applications.ResNet50",
}
# The report's names for what this section measures: the ratio row and the extra seconds.
LABELS = {
    "ratio": "import + first use: keras_resnet.ResNet50 vs keras.applications.ResNet50",
    "extra": "import + first use: keras_resnet.ResNet50 - keras.applications.ResNet50",
}


def _import_seconds(module: str) -> tuple[float, float]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_CODE.format(_IMPORTS[module])],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"import {module} failed: {proc.stderr[-1000:]}")
    return float(proc.stdout.strip().splitlines()[-1]), wall


def section_import(ctx: Context) -> dict[str, Any]:
    s = ctx.settings
    if not s.quick:
        _import_seconds("keras_resnet"), _import_seconds("keras")  # warm the file cache
    runs: dict[str, tuple[list[float], list[float]]] = {
        "keras_resnet": ([], []),
        "keras": ([], []),
    }
    for rep in range(s.import_reps):
        for module in ("keras_resnet", "keras") if rep % 2 == 0 else ("keras", "keras_resnet"):
            seconds, wall = _import_seconds(module)
            runs[module][0].append(seconds)
            runs[module][1].append(wall)
    ours, ref = runs["keras_resnet"][0], runs["keras"][0]
    record = timing.compare(ours, ref)
    record["extra_seconds"] = timing.difference(ours, ref)
    record["process_wall_seconds"] = {m: timing.summary(r[1]) for m, r in runs.items()}
    record["what"] = (
        f"seconds of `{_IMPORTS['keras_resnet']}` in a fresh interpreter "
        f"(start-up excluded); reference: `{_IMPORTS['keras']}`"
    )
    record["labels"] = LABELS
    log(
        f"import: keras_resnet {np.median(ours):.3f} s, keras {np.median(ref):.3f} s, "
        f"extra {record['extra_seconds']['delta']:+.3f} s"
    )
    return record
