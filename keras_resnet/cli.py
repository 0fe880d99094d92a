"""The `keras-resnet` command. Thin: it parses arguments and calls the modules.

Bad arguments exit with status 2 and one line naming the argument and the
value (argparse's own convention), never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _default_classes(spec) -> int:
    # The CIFAR nets come with CIFAR's 10 classes, as ResNet20() does.
    return 10 if spec.stem == "cifar" else 1000


def _cmd_list(args: argparse.Namespace) -> int:
    from keras_resnet.spec import get_spec, list_specs

    print(f"{'name':<12} {'block':<10} {'version':<7} {'stem':<8} {'depth':>5} {'params':>12}")
    for name in list_specs():
        spec = get_spec(name)
        classes = _default_classes(spec)
        print(
            f"{name:<12} {spec.block:<10} {spec.version:<7} {spec.stem:<8} {spec.depth:>5} "
            f"{spec.count_params(classes=classes):>12,}"
        )
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from keras_resnet.builder import build_resnet

    spec = _spec_from_args(args)
    kwargs = {"classes": _default_classes(spec) if args.classes is None else args.classes}
    if args.image_size is not None:
        kwargs["input_shape"] = (args.image_size, args.image_size, args.channels)
    model = build_resnet(spec, **kwargs)
    if not args.quiet:
        model.summary()
    print(f"{model.name}: {model.count_params():,} parameters")
    return 0


def _spec_from_args(args: argparse.Namespace):
    """--model NAME or --spec FILE, with --width applied on top."""
    import dataclasses
    import json

    from keras_resnet.spec import ResNetSpec, get_spec

    if getattr(args, "spec", None):
        try:
            with open(args.spec) as f:
                spec = ResNetSpec.from_dict(json.load(f))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read --spec {args.spec!r}: {e}") from None
    else:
        spec = get_spec(args.model)
    if getattr(args, "width", None) is not None:
        spec = dataclasses.replace(spec, width=args.width)
    return spec


def _train_kwargs(args: argparse.Namespace) -> dict:
    return dict(
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        learning_rate=args.lr,
        schedule=args.schedule,
        warmup_epochs=args.warmup_epochs,
        weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing,
        mixed_precision=args.mixed_precision,
        image_size=args.image_size,
        channels=args.channels,
        data_dir=args.data_dir,
        download=args.download,
        seed=args.seed,
        augment=not args.no_augment,
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from keras_resnet.training import train

    spec = _spec_from_args(args)
    train(spec, args.dataset, output_dir=args.output, **_train_kwargs(args))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from keras_resnet.export import export_run

    output = args.output or str(Path("saved_models") / Path(args.source).resolve().stem)
    export_run(
        args.source,
        output,
        dataset=args.dataset,
        data_dir=args.data_dir,
        formats=args.formats,
        overwrite=args.overwrite,
        calibration_samples=args.calibration_samples,
        verify_samples=args.verify_samples,
        min_int8_agreement=args.min_int8_agreement,
        preprocessing=args.preprocessing,
        top_k=args.top_k,
        uint8_signature=not args.no_uint8_signature,
        latency_runs=args.latency_runs,
        num_threads=args.threads,
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """The main job: ResNet-20 on the offline digits, to >= 98% test accuracy, then export."""
    from keras_resnet.export import check_output_dir, export_run
    from keras_resnet.training import train

    if args.export:
        # Refused before the training, not after: --export replaces only an earlier export.
        check_output_dir(args.export, overwrite=True)
    metrics = train(
        "resnet20",
        "digits",
        output_dir=args.output,
        epochs=DEMO_EPOCHS,
        batch_size=DEMO_BATCH_SIZE,
        image_size=DEMO_IMAGE_SIZE,
        seed=args.seed,
    )
    ok = metrics["test_accuracy"] >= 0.98
    # A model under the bar must not replace an earlier, good export.
    if args.export and ok:
        export_run(args.output, args.export, formats="all", overwrite=True)
    skipped = f"; export skipped, {args.export} left as it was" if args.export and not ok else ""
    print(
        f"demo: ResNet-20 on digits, test accuracy {metrics['test_accuracy']:.4f} "
        f"({'meets' if ok else 'MISSES'} the 0.98 bar) in {metrics['wall_seconds']:.0f} s"
        f"{skipped}"
    )
    return 0 if ok else 1


def _cmd_tune(args: argparse.Namespace) -> int:
    from keras_resnet.tuning import SearchSpace, search

    base = _spec_from_args(args) if args.spec or args.model else None
    given = {
        "widths": args.width_choices,
        "num_stages": args.stages,
        "blocks": None
        if args.min_blocks is None and args.max_blocks is None
        else (args.min_blocks, args.max_blocks),
        "block_types": args.block_types,
        "versions": args.versions,
        "stems": args.stems,
        "optimizers": args.optimizers,
        "batch_sizes": args.batch_sizes,
        "learning_rate": args.lr_range,
        "weight_decay": args.weight_decay_range,
    }
    # A flag left out keeps SearchSpace's default (its None would switch the part off).
    space = SearchSpace(**{k: v for k, v in given.items() if v is not None})
    try:
        search(
            args.dataset,
            output_dir=args.output,
            base=base,
            tuner=args.tuner,
            objective=args.objective,
            max_trials=args.max_trials,
            max_epochs=args.max_epochs,
            hyperband_factor=args.factor,
            max_params=args.max_params,
            max_latency_ms=args.max_latency_ms,
            space=space,
            image_size=args.image_size,
            channels=args.channels,
            data_dir=args.data_dir,
            download=args.download,
            augment=not args.no_augment,
            seed=args.seed,
            overwrite=args.overwrite,
            role=args.role,
            oracle_address=args.oracle,
            tuner_id=args.tuner_id,
            allow_remote_oracle=args.allow_remote_oracle,
            # Left out unless given: the library's default applies.
            **({"oracle_timeout": args.oracle_timeout} if args.oracle_timeout is not None else {}),
            retrain_epochs=args.retrain_epochs,
            max_search_seconds=args.max_search_seconds,
            max_consecutive_failed_trials=args.max_failed_trials,
            verbose=0 if args.quiet else 1,
        )
    except RuntimeError as e:
        # A search that ran and could not finish (every trial failed, ...): not a usage error.
        print(f"keras-resnet tune: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


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


def _int_range(text: str) -> int | tuple[int, int]:
    """`3` or `2-4`."""
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


# 16x16 digits: 98%+ in a few minutes on 2 cores (32x32 costs 4x the time for the same accuracy).
DEMO_EPOCHS, DEMO_BATCH_SIZE, DEMO_IMAGE_SIZE = 40, 64, 16


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64, help="global batch size")
    p.add_argument("--optimizer", default="sgd", help="sgd | adam | adamw")
    p.add_argument("--lr", type=float, help="peak learning rate (default: 0.1 SGD, 1e-3 Adam)")
    p.add_argument("--schedule", default="cosine", help="cosine | step | constant")
    p.add_argument("--warmup-epochs", type=int, default=1)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--mixed-precision", help="mixed_float16 | mixed_bfloat16")
    p.add_argument("--image-size", type=int, help="resize side (default: the spec's input size)")
    p.add_argument("--channels", type=int, help="1 or 3 (default: the dataset's own)")
    p.add_argument("--data-dir", help="tensorflow-datasets data_dir")
    p.add_argument("--download", action="store_true", help="let tfds download and prepare")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-augment", action="store_true")


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line: the error, then where the usage is."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="keras-resnet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="named specs with their parameter counts")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("build", help="build a named spec, print its summary and parameter count")
    p.add_argument("model", help="a named spec, e.g. resnet50 (see `keras-resnet list`)")
    p.add_argument("--width", type=float, help="width multiplier")
    p.add_argument("--classes", type=int)
    p.add_argument("--image-size", type=int)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--quiet", action="store_true", help="only the parameter count")
    p.set_defaults(func=_cmd_build)

    p = sub.add_parser("train", help="train a ResNet and write a run directory")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", default="resnet20", help="a named spec (default resnet20)")
    which.add_argument("--spec", help="a spec JSON file (ResNetSpec.to_dict(), best_spec.json)")
    p.add_argument("--width", type=float, help="width multiplier applied to the spec")
    p.add_argument("--dataset", default="digits", help="digits | a tfds name | an image folder")
    p.add_argument("--output", required=True, help="run directory (rerun to resume)")
    _add_train_arguments(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("export", help="export a run or .keras file to .keras/SavedModel/TFLite")
    p.add_argument("source", help="a run directory (its best.keras) or a .keras file")
    p.add_argument("--output", help="directory to create (default saved_models/<source name>)")
    p.add_argument(
        "--formats",
        default="all",
        help="all | tflite | comma list of "
        + ", ".join(
            (
                "keras",
                "saved_model",
                "tflite_fp32",
                "tflite_fp16",
                "tflite_dynamic",
                "tflite_int8",
                "onnx",
            )
        ),
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    p.add_argument("--dataset", help="calibration/verification data (default: the run's)")
    p.add_argument("--data-dir", help="tensorflow-datasets data_dir")
    p.add_argument("--calibration-samples", type=int, default=200, help="int8 calibration images")
    p.add_argument("--verify-samples", type=int, default=1000, help="test images compared")
    p.add_argument("--min-int8-agreement", type=float, default=0.99)
    p.add_argument("--preprocessing", default="unit", help="uint8 signature: unit|caffe|tf|none")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--no-uint8-signature", action="store_true")
    p.add_argument("--latency-runs", type=int, default=50, help="batch-1 runs per TFLite file")
    p.add_argument("--threads", type=int, help="LiteRT threads for latency (default: all cores)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("tune", help="Keras Tuner search over width and depth under budgets")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", help="base spec name (default: resnet20 < 64 px, else resnet18)")
    which.add_argument("--spec", help="base spec JSON file")
    p.add_argument("--dataset", default="digits", help="digits | a tfds name | an image folder")
    p.add_argument("--output", required=True, help="run directory (rerun to resume)")
    p.add_argument("--tuner", default="hyperband", help="hyperband | random | bayesian")
    p.add_argument("--objective", default="val_accuracy", help="val_accuracy | val_loss")
    p.add_argument("--max-trials", type=int, default=20)
    p.add_argument(
        "--max-epochs",
        "--epochs",
        type=int,
        default=10,
        help="epochs per trial (Hyperband: the most any trial trains)",
    )
    p.add_argument("--factor", type=int, default=3, help="Hyperband reduction factor")
    p.add_argument("--max-params", type=int, help="parameter budget")
    p.add_argument("--max-latency-ms", type=float, help="batch-1 latency budget on this machine")
    p.add_argument(
        "--width-choices",
        type=_list_of(float, "--width-choices"),
        help="e.g. 0.25,0.5,1 (default 0.25,0.5,0.75,1,1.5,2)",
    )
    p.add_argument("--stages", type=_int_range, help="number of stages: N or MIN-MAX")
    p.add_argument("--min-blocks", type=int, help="fewest blocks per stage (default 1)")
    p.add_argument("--max-blocks", type=int, help="most blocks per stage (default: the base's)")
    p.add_argument("--block-types", type=_list_of(str, "--block-types"), help="basic,bottleneck")
    p.add_argument("--versions", type=_list_of(str, "--versions"), help="v1,v2")
    p.add_argument(
        "--stems", type=_list_of(str, "--stems"), help="cifar,imagenet (default by size)"
    )
    p.add_argument("--optimizers", type=_list_of(str, "--optimizers"), help="sgd,adam,adamw")
    p.add_argument("--batch-sizes", type=_list_of(int, "--batch-sizes"), help="e.g. 32,64,128")
    p.add_argument(
        "--lr-range",
        type=_float_range("--lr-range"),
        help="learning rate: LOW,HIGH (log-sampled) or one value (default by optimizer)",
    )
    p.add_argument(
        "--weight-decay-range",
        type=_float_range("--weight-decay-range"),
        help="weight decay: LOW,HIGH (log-sampled) or one value (default by optimizer)",
    )
    p.add_argument("--image-size", type=int, help="resize side (default: the base's input size)")
    p.add_argument("--channels", type=int, help="1 or 3 (default: the dataset's own)")
    p.add_argument("--data-dir", help="tensorflow-datasets data_dir")
    p.add_argument("--download", action="store_true", help="let tfds download and prepare")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--retrain-epochs",
        type=int,
        default=0,
        help="retrain the best candidate this long (0: keep its trial weights)",
    )
    p.add_argument("--max-search-seconds", type=float, help="start no trial after this long")
    p.add_argument(
        "--max-failed-trials",
        type=int,
        default=3,
        help="stop after this many failed trials in a row (keras-tuner's limit)",
    )
    p.add_argument("--overwrite", action="store_true", help="start the search over")
    p.add_argument("--role", help="chief | worker (distributed search, see docs/tuning.md)")
    p.add_argument("--oracle", help="the chief's HOST:PORT")
    p.add_argument(
        "--tuner-id", help="a worker's unique, stable id: 1-64 of A-Z a-z 0-9 _ - (see docs)"
    )
    p.add_argument(
        "--oracle-timeout",
        type=float,
        metavar="SECONDS",
        help="a worker exits when its chief does not answer this long (default 30)",
    )
    p.add_argument(
        "--allow-remote-oracle",
        action="store_true",
        help="let the chief listen on a non-loopback address: its port accepts "
        "unauthenticated connections, so use a trusted private network only",
    )
    p.add_argument("--quiet", action="store_true", help="only the final table")
    p.set_defaults(func=_cmd_tune)

    p = sub.add_parser("demo", help="train ResNet-20 on the offline digits (the main job)")
    p.add_argument("--output", default="runs/demo")
    p.add_argument(
        "--export",
        default="saved_models/digits-resnet20",
        help="export the trained model here (every format; replaces only an earlier export, "
        "and only when the model meets the bar); '' to skip",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)
    return parser


# What each command is doing, for the line printed before an unexpected traceback.
_DOING = {
    "list": "listing the named specs",
    "build": "building the model",
    "train": "training",
    "export": "exporting",
    "tune": "searching",
    "demo": "running the demo",
}


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command. Expected failures print one line and exit non-zero, no traceback:

    - 2: a bad argument (a library ValueError, which names the argument and the value);
    - 1: a failure of the work itself: a file that cannot be written (disk full,
      permissions), a training run that diverged, a search that could not finish;
    - 130: interrupted (Ctrl-C); rerunning the same command resumes.

    Anything else is a bug: one line says what the command was doing, then the traceback.
    """
    from keras_resnet.training import TrainingDivergedError

    parser = build_parser()
    args = parser.parse_args(argv)
    prefix = f"{parser.prog} {args.command}: error:"
    try:
        return args.func(args)
    except ValueError as e:
        parser.exit(2, f"{prefix} {_first_line(e)}\n")
    except OSError as e:
        target = e.filename2 or e.filename  # a rename names its destination second
        where = f": {target}" if target else ""
        reason = e.strerror or _first_line(e)
        parser.exit(1, f"{prefix} {_DOING[args.command]} failed: {reason}{where}\n")
    except TrainingDivergedError as e:
        parser.exit(1, f"{prefix} {_first_line(e)}\n")
    except KeyboardInterrupt:
        parser.exit(130, f"{prefix} interrupted; rerun the same command to resume.\n")
    except Exception:
        print(
            f"{parser.prog} {args.command}: internal error while {_DOING[args.command]} "
            "(a bug; please report it with the traceback below):",
            file=sys.stderr,
        )
        raise


if __name__ == "__main__":
    sys.exit(main())
