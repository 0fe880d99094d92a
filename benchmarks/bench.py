"""`make bench`: keras_resnet against keras.applications and the TFLite variants, as ratios.

    python -m benchmarks.bench [--quick] [--out DIR] [--only SECTION ...]

Everything runs in one process. Each A/B comparison interleaves the two sides
and repeats (see `benchmarks/timing.py`); the results file holds per side the
median, quartiles and raw samples, and the speed ratio keras_resnet / reference
with a 95% bootstrap interval. Sections (`--only` picks some), one module each:

  build    build time of ResNet50 and ResNet152, keras_resnet vs keras.applications
  forward  ResNet50 / ResNet50V2 forward at batch 1 and 32 vs keras.applications,
           through `predict_on_batch` (what users get by default) and through a
           `tf.function` of `model(x, training=False)`; same weights on both sides
  train    ResNet50 train step (`train_on_batch`, batch 16, SGD) vs keras.applications
  rows     the table of rows in `benchmarks/rows.py` (candidate, reference, target);
           runs only when the table has rows
  flops    ResNet50 forward GFLOP/s at batch 32 against the measured fp32 matmul rate
  import   `import keras_resnet; keras_resnet.ResNet50` vs `import keras;
           keras.applications.ResNet50`, fresh interpreters
  digits   ResNet-20 on the digits pipeline: training images/s, the demo's time to 98%
  tflite   TFLite batch-1 latency of every `keras_resnet.export` variant, ResNet50 and
           ResNet-20, as speed-ups over fp32 TFLite and over Keras
  gpu      fp32 vs mixed precision, XLA off and on; skipped (saying so) without a GPU

The results go to `<out>/<host>-<date>-<time>.json` (`-quick` / `-partial`
suffixed for `--quick` and `--only` runs, which the README table never uses);
`python -m benchmarks.report` turns the latest full one into the README
table and a PNG chart. `--quick` (tiny inputs, few repetitions) is a smoke
check of this script, run by the test suite; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import report, rows  # noqa: E402
from benchmarks.build import section_build  # noqa: E402
from benchmarks.common import FULL, QUICK, Context, Settings, free, log  # noqa: E402
from benchmarks.digits import section_digits  # noqa: E402
from benchmarks.flops import count_flops, section_flops  # noqa: E402
from benchmarks.forward import section_forward  # noqa: E402
from benchmarks.gpu import section_gpu  # noqa: E402
from benchmarks.imports import section_import  # noqa: E402
from benchmarks.machine import load_average, machine, versions  # noqa: E402
from benchmarks.tflite import section_tflite  # noqa: E402
from benchmarks.train_step import section_train  # noqa: E402
from keras_resnet._io import write_json  # noqa: E402

__all__ = ["FULL", "QUICK", "SECTIONS", "Context", "Settings", "count_flops", "main", "run"]

# In run order; `digits` before `tflite`, which converts the model it trained.
SECTION_FUNCTIONS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "build": section_build,
    "forward": section_forward,
    "train": section_train,
    **({"rows": rows.section_rows} if rows.ROWS else {}),
    "flops": section_flops,
    "import": section_import,
    "digits": section_digits,
    "tflite": section_tflite,
    "gpu": section_gpu,
}
SECTIONS = tuple(SECTION_FUNCTIONS)
RESULTS_DIR = Path(__file__).resolve().parent / "results"
SCHEMA = 1
JSON_INDENT = 1  # the results files' layout


def _results_path(out_dir: Path, host: str, now: datetime.datetime, kind: str) -> Path:
    safe_host = re.sub(r"[^A-Za-z0-9._-]+", "-", host) or "host"
    suffix = "" if kind == "full" else f"-{kind}"
    return out_dir / f"{safe_host}-{now:%Y-%m-%d-%H%M%S}{suffix}.json"


def _run_section(name: str, ctx: Context) -> tuple[dict[str, Any], bool]:
    """One section's record (its error, if it failed), with its time and load average."""
    log(f"--- {name}")
    load_before, t0 = load_average(), time.perf_counter()
    ok = True
    try:
        section = SECTION_FUNCTIONS[name](ctx)
    except Exception as e:
        ok = False
        traceback.print_exc()
        section = {"error": f"{type(e).__name__}: {e}"}
    free()  # the section's models are unreachable now
    section["seconds"] = round(time.perf_counter() - t0, 1)
    section["load_average"] = {"before": load_before, "after": load_average()}
    return section, ok


def run(settings: Settings, sections: tuple[str, ...], out_dir: Path) -> tuple[Path, bool]:
    """Runs the sections in order, writing the results file after each; returns (path, ok)."""
    import keras

    keras.utils.set_random_seed(0)
    out_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    kind = "quick" if settings.quick else ("full" if sections == SECTIONS else "partial")
    info = machine()
    path = _results_path(out_dir, info["host"], now, kind)
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "kind": kind,
        "date": now.isoformat(timespec="seconds"),
        "machine": info,
        "versions": versions(),
        "settings": dataclasses.asdict(settings),
        "load_average": {"start": load_average()},
        "complete": False,
        "sections": {},
    }
    log(f"benchmark ({kind}) -> {path}\nload average {results['load_average']['start']}")
    ok = True
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="keras_resnet_bench_") as scratch:
        ctx = Context(settings=settings, scratch=Path(scratch))
        for name in sections:
            results["sections"][name], section_ok = _run_section(name, ctx)
            ok = ok and section_ok
            write_json(path, results, indent=JSON_INDENT)
    results["load_average"]["end"] = load_average()
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    results["complete"] = ok
    results["ratios"] = report.ratios(results)
    results["targets"] = report.targets(results)
    write_json(path, results, indent=JSON_INDENT)
    log(f"load average {results['load_average']['end']}; {results['wall_seconds']} s")
    log(report.summary_text(results))
    return path, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--quick", action="store_true", help="smoke check: tiny and few")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        metavar="SECTION",
        help=f"run only these sections ({', '.join(SECTIONS)})",
    )
    args = parser.parse_args(argv)
    sections = tuple(s for s in SECTIONS if s in args.only) if args.only else SECTIONS
    path, ok = run(QUICK if args.quick else FULL, sections, args.out)
    log(f"results: {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
