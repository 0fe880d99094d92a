"""`keras-resnet tune`: its flags (the search, the space, the distributed roles) and the call.

Split from `keras_resnet.cli` (the tune command alone has ~40 flags); registered there
like every other subcommand. Imports no TensorFlow.
"""

from __future__ import annotations

import argparse
import sys

from keras_resnet import constants
from keras_resnet._cli_common import (
    DATA_KEYS,
    _add_data_arguments,
    _choices,
    _given,
    _spec_from_args,
)

SEARCH_KEYS = (
    "tuner", "objective", "max_trials", "max_epochs", "hyperband_factor", "max_params",
    "max_latency_ms", "latency_target", "latency_threads", "latency_model", "overwrite", "role",
    "oracle_address",
    "tuner_id", "allow_remote_oracle", "oracle_timeout", "retrain_epochs", "max_search_seconds",
    "max_consecutive_failed_trials",
    *DATA_KEYS,
)  # fmt: skip
SPACE_KEYS = (
    "widths", "num_stages", "block_types", "versions", "stems", "optimizers", "batch_sizes",
    "learning_rate", "weight_decay", "se_ratios", "groups", "shortcuts", "drop_path_rates",
)  # fmt: skip


def _list_of(kind: type, name: str):
    def parse(text: str) -> list:
        try:
            values = [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            values = []
        if not values:
            raise argparse.ArgumentTypeError(
                f"{name} must be a comma-separated list of at least one {kind.__name__}. "
                f"Received: {name}={text!r}"
            )
        return values

    return parse


def _stages_flag(text: str) -> int | tuple[int, int]:
    """`--stages 3` or `--stages 2-4`."""
    low, dash, high = text.partition("-")
    try:
        return (int(low), int(high)) if dash else int(low)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--stages must be N or MIN-MAX. Received: --stages={text!r}"
        ) from None


def _float_range(name: str):
    """`0.1` (fixed) or `0.01,0.2` (a log-sampled range); floats like 1e-4 have a dash."""

    def parse(text: str) -> float | tuple[float, float]:
        values = _list_of(float, name)(text)
        if len(values) > 2:
            raise argparse.ArgumentTypeError(
                f"{name} must be VALUE or LOW,HIGH. Received: {name}={text!r}"
            )
        return values[0] if len(values) == 1 else (values[0], values[1])

    return parse


def _add_tune(sub) -> None:
    p = sub.add_parser("tune", help="Keras Tuner search over width and depth under budgets")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", help="base spec name (default: resnet20 < 64 px, else resnet18)")
    which.add_argument("--spec", help="base spec JSON file")
    p.add_argument("--output", required=True, help="run directory (rerun to resume)")
    _add_data_arguments(p, "the base's input size")
    p.add_argument("--tuner", help=_choices(constants.TUNERS))
    p.add_argument("--objective", help=_choices(constants.OBJECTIVES))
    p.add_argument("--max-trials", type=int, help="default 20")
    p.add_argument(
        "--max-epochs", "--epochs", type=int, help="epochs per trial (Hyperband: the most)"
    )
    p.add_argument("--factor", dest="hyperband_factor", type=int, help="Hyperband's (3)")
    p.add_argument("--max-params", type=int, help="parameter budget")
    p.add_argument("--max-latency-ms", type=float, help="batch-1 latency budget on this machine")
    p.add_argument(
        "--latency-target",
        help=f"{_choices(constants.LATENCY_TARGETS)}: what latency is measured on "
        f"(default {constants.DEFAULT_LATENCY_TARGET}; tflite: converted, timed in LiteRT)",
    )
    p.add_argument(
        "--latency-threads", type=int, metavar="N", help="LiteRT threads (default: every core)"
    )
    p.add_argument(
        "--no-latency-model",
        dest="latency_model",
        action="store_false",
        help="measure every candidate against --max-latency-ms (default: reject those the "
        "latency model predicts clearly over it unconverted)",
    )
    p.add_argument("--retrain-epochs", type=int, help="retrain the best this long (0: keep it)")
    p.add_argument("--max-search-seconds", type=float, help="start no trial after this long")
    p.add_argument(
        "--max-failed-trials",
        dest="max_consecutive_failed_trials",
        type=int,
        help="stop after this many failed trials in a row (default 3)",
    )
    p.add_argument("--overwrite", action="store_true", help="start the search over")
    p.add_argument("--quiet", action="store_true", default=False, help="only the final table")
    _add_space_arguments(p)
    _add_distributed_arguments(p)
    p.set_defaults(func=_cmd_tune)


def _add_space_arguments(p: argparse.ArgumentParser) -> None:
    widths = ",".join(f"{w:g}" for w in constants.DEFAULT_WIDTHS)
    p.add_argument(
        "--width-choices", dest="widths", type=_list_of(float, "--width-choices"), help=widths
    )
    p.add_argument("--stages", dest="num_stages", type=_stages_flag, help="N or MIN-MAX")
    p.add_argument("--min-blocks", type=int, help="fewest blocks per stage (default 1)")
    p.add_argument("--max-blocks", type=int, help="most blocks per stage (default: the base's)")
    for flag, values in (
        ("--block-types", "basic,bottleneck"),
        ("--versions", "v1,v2"),
        ("--stems", "cifar,imagenet,deep (default by size)"),
        ("--optimizers", ",".join(constants.OPTIMIZERS)),
    ):
        p.add_argument(flag, type=_list_of(str, flag), help=values)
    p.add_argument("--batch-sizes", type=_list_of(int, "--batch-sizes"), help="e.g. 32,64,128")
    for flag, kind, example in (  # the family's optional parts, off unless given
        ("--se-ratios", float, "squeeze-and-excitation, e.g. 0,0.0625"),
        ("--groups", int, "grouped 3x3 in bottlenecks, e.g. 1,4"),
        ("--shortcuts", str, "e.g. projection,avg"),
        ("--drop-path-rates", float, "stochastic depth, e.g. 0,0.1"),
    ):
        p.add_argument(flag, type=_list_of(kind, flag), help=f"{example} (default: off)")
    for flag, dest in (("--lr-range", "learning_rate"), ("--weight-decay-range", "weight_decay")):
        p.add_argument(
            flag,
            dest=dest,
            type=_float_range(flag),
            help="LOW,HIGH (log-sampled) or one value (default by optimizer)",
        )


def _add_distributed_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--role", help=_choices(constants.ROLES) + " (distributed search, see docs/tuning.md)"
    )
    p.add_argument("--oracle", dest="oracle_address", help="the chief's HOST:PORT")
    p.add_argument(
        "--tuner-id", help="a worker's unique, stable id: 1-64 of A-Z a-z 0-9 _ - (see docs)"
    )
    p.add_argument(
        "--oracle-timeout",
        type=float,
        metavar="SECONDS",
        help="a worker exits when its chief does not answer this long "
        f"(default {constants.DEFAULT_ORACLE_TIMEOUT:g})",
    )
    p.add_argument(
        "--allow-remote-oracle",
        action="store_true",
        help="let the chief listen on a non-loopback address: its port accepts "
        "unauthenticated connections, so use a trusted private network only",
    )


def _cmd_tune(args: argparse.Namespace) -> int:
    from keras_resnet.tuning import SearchSpace, search

    space = _given(args, SPACE_KEYS)
    if hasattr(args, "min_blocks") or hasattr(args, "max_blocks"):
        space["blocks"] = (getattr(args, "min_blocks", None), getattr(args, "max_blocks", None))
    try:
        search(
            args.dataset,
            output_dir=args.output,
            base=_spec_from_args(args),
            space=SearchSpace(**space),
            verbose=0 if args.quiet else 1,
            **_given(args, SEARCH_KEYS),
        )
    except RuntimeError as e:
        # A search that ran and could not finish (every trial failed, ...): not a usage error.
        print(f"keras-resnet tune: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0
