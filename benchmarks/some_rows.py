"""Some rows of `benchmarks/rows.py`, at a chosen image size, into their own results file.

    python -m benchmarks.some_rows --match jit_compile [--match keras_bf16]
        [--image-size 224] [--reps 11] [--out benchmarks/results]

`make bench` times every row at 224x224; on a shared or small machine a
ResNet50 train step there lasts seconds, so a finding about a few rows can be
measured here at a smaller size without the rest (rows whose name contains any
`--match`). Each row is timed as `make bench` times it (`rows.run_row`:
interleaved, `--reps` repetitions, 95% interval). The results go to
`<out>/rows-<host>-<date>-<time>-<size>px.json` with the machine (CPU flags),
versions, settings and load average; the command line is recorded.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import rows  # noqa: E402
from benchmarks.bench import RESULTS_DIR, _results_path  # noqa: E402
from benchmarks.common import FULL, free, log  # noqa: E402
from benchmarks.machine import load_average, machine, versions  # noqa: E402
from keras_resnet._io import write_json  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.some_rows", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--match", action="append", required=True, help="part of a row's name")
    parser.add_argument("--image-size", type=int, default=FULL.image_size)
    parser.add_argument("--reps", type=int, default=FULL.forward_reps)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    table = [r for r in rows.ROWS if any(m in r.name for m in args.match)]
    if not table:
        parser.error(f"--match names no row of benchmarks/rows.py. Received: {args.match}")
    settings = dataclasses.replace(FULL, image_size=args.image_size, forward_reps=args.reps)
    now = datetime.datetime.now(datetime.timezone.utc)
    info = machine()
    path = _results_path(args.out, info["host"], now, f"{args.image_size}px")
    path = path.with_name(f"rows-{path.name}")
    import keras

    keras.utils.set_random_seed(0)
    results = {
        "what": "some rows of benchmarks/rows.py (benchmarks/some_rows.py)",
        "command": "python -m benchmarks.some_rows " + " ".join(argv or sys.argv[1:]),
        "date": now.isoformat(timespec="seconds"),
        "machine": info,
        "versions": versions(),
        "settings": dataclasses.asdict(settings),
        "load_average": {"start": load_average()},
        "rows": {},
    }
    for row in table:
        log(f"--- {row.name} ({args.image_size}x{args.image_size})")
        results["rows"][row.name] = rows.run_row(row, settings)
        results["load_average"][row.name] = load_average()
        write_json(path, results, indent=1)
        free()
    log(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
