"""The `keras-resnet` command. Thin: it parses arguments and calls the library.

Each subcommand is one `_add_*` function (its flags) and one `_cmd_*` function (the
call); `tune`, with ~40 flags, has its own module (`keras_resnet._cli_tune`), and what
the subcommands share is in `keras_resnet._cli_common`. Flags are stored under the
library's keyword names and are left out when not given, so the library's defaults
apply; choices and defaults shown in the help come from `keras_resnet.constants`,
never retyped. Parsing imports no
TensorFlow: `keras-resnet --help` and argument errors answer at once.

Bad arguments exit with status 2 and one line naming the argument and the value
(argparse's own convention), never a traceback; see `main` for the other codes.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

from keras_resnet import constants
from keras_resnet._cli_common import (
    DATA_KEYS,
    _add_data_arguments,
    _choices,
    _default_classes,
    _given,
    _spec_from_args,
)
from keras_resnet._cli_tune import _add_tune
from keras_resnet._signals import exit_code, ignore_signals_from_now, interruptible
from keras_resnet.errors import TrainingDivergedError
from keras_resnet.recipes import RECIPE_NAMES

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Library keywords each command passes on when their flag is given.
TRAIN_KEYS = (
    "epochs", "batch_size", "optimizer", "learning_rate", "schedule", "warmup_epochs",
    "weight_decay", "label_smoothing", "mixed_precision", "init_weights", "recipe",
    "max_image_pixels", *DATA_KEYS,
)  # fmt: skip
EXPORT_KEYS = (
    "dataset", "data_dir", "formats", "overwrite", "calibration_samples", "verify_samples",
    "min_int8_agreement", "preprocessing", "top_k", "uint8_signature", "latency_runs",
    "num_threads", "fold",
)  # fmt: skip
# --- list, build ---------------------------------------------------------------------------


def _add_list(sub) -> None:
    p = sub.add_parser("list", help="named specs with their parameter counts")
    p.add_argument(
        "--pretrained", action="store_true", default=False, help="the pretrained name.tag models"
    )
    p.set_defaults(func=_cmd_list)


def _parts(spec) -> str:
    """What a spec adds to the plain ResNet, in a few words (`keras-resnet list`)."""
    parts = [spec.version, f"{spec.stem} stem", f"{spec.shortcut} shortcut"]
    if spec.groups > 1:
        parts.append(f"{spec.groups}x{spec.width_per_group}d groups")
    elif spec.width_per_group != 64:
        parts.append(f"{spec.width_per_group // 64}x wide")
    if spec.se_ratio:
        parts.append(f"SE 1/{round(1 / spec.se_ratio)}")
    if spec.zero_init_last:
        parts.append("zero-init")
    return ", ".join(parts)


def _list_pretrained() -> int:
    from keras_resnet.registry import PRETRAINED

    print(f"{'name':<30} {'graph':<18} {'top-1':>6} {'size':>4} {'crop':>5}  source")
    for name, cfg in PRETRAINED.items():
        print(
            f"{name:<30} {cfg.spec:<18} {cfg.top1:>6.2f} {cfg.input_size:>4} "
            f"{cfg.crop_pct:>5.3f}  {cfg.source}"
        )
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from keras_resnet.catalog import application_name
    from keras_resnet.spec import get_spec, list_specs

    if args.pretrained:
        return _list_pretrained()
    print(f"{'name':<18} {'application':<16} {'block':<10} {'depth':>5} {'params':>12}  parts")
    for name in list_specs():
        spec = get_spec(name)
        params = spec.count_params(classes=_default_classes(spec))
        app = application_name(name) or "-"
        print(
            f"{name:<18} {app:<16} {spec.block:<10} {spec.depth:>5} {params:>12,}  {_parts(spec)}"
        )
    return 0


def _add_build(sub) -> None:
    p = sub.add_parser("build", help="build a named spec, print its summary and parameter count")
    p.add_argument("model", help="a named spec, e.g. resnet50 (see `keras-resnet list`)")
    p.add_argument("--width", type=float, help="width multiplier")
    p.add_argument("--classes", type=int, help="default: 10 for the CIFAR nets, else 1000")
    p.add_argument("--image-size", type=int, help="default: the spec's input size")
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--quiet", action="store_true", default=False, help="only the count")
    p.set_defaults(func=_cmd_build)


def _cmd_build(args: argparse.Namespace) -> int:
    from keras_resnet.builder import build_resnet

    spec = _spec_from_args(args)
    kwargs = {"classes": getattr(args, "classes", _default_classes(spec))}
    if hasattr(args, "image_size"):
        kwargs["input_shape"] = (args.image_size, args.image_size, args.channels)
    model = build_resnet(spec, **kwargs)
    if not args.quiet:
        model.summary()
    print(f"{model.name}: {model.count_params():,} parameters")
    return 0


def _add_convert_weights(sub) -> None:
    p = sub.add_parser(
        "convert-weights", help="a torchvision/timm .safetensors file -> Keras .weights.h5"
    )
    p.add_argument("file", help="the .safetensors state dict (torchvision or timm)")
    p.add_argument("--model", required=True, help="its named spec, e.g. resnet50d, tv_resnet50")
    p.add_argument("--output", required=True, help="a new OUT.weights.h5")
    p.set_defaults(func=_cmd_convert_weights)


def _cmd_convert_weights(args: argparse.Namespace) -> int:
    from keras_resnet.torch_weights import convert_torch_weights

    done = convert_torch_weights(args.file, args.model, args.output)
    print(
        f"{done['output']}: {done['model']}, {done['classes']} classes, "
        f"{done['params']:,} parameters; load with build_resnet({done['model']!r}, "
        f"weights={done['output']!r})"
    )
    return 0


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="top-k classes of image files with a model")
    p.add_argument(
        "model",
        help="a .keras file, a run or export directory, a SavedModel, a .tflite, or a "
        "pretrained name such as resnet50d.ra2_in1k (keras-resnet list --pretrained)",
    )
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...)")
    p.add_argument("--top-k", type=int, help=f"default {constants.DEFAULT_TOP_K}")
    p.add_argument(
        "--preprocessing",
        help=f"{_choices(constants.PREPROCESSING)} (default: the export's, else unit)",
    )
    _add_max_image_pixels(p)
    p.add_argument("--json", action="store_true", default=False, help="JSON output")
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(args: argparse.Namespace) -> int:
    from keras_resnet.predict import format_predictions, predict

    results = predict(
        args.model, args.images, **_given(args, ("top_k", "preprocessing", "max_image_pixels"))
    )
    print(format_predictions(results, as_json=args.json))
    return 0


# --- train, demo ---------------------------------------------------------------------------


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a ResNet and write a run directory")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", help=f"a named spec (default {constants.DEMO_MODEL})")
    which.add_argument("--spec", help="a spec JSON file (ResNetSpec.to_dict(), best_spec.json)")
    p.add_argument("--width", type=float, help="width multiplier applied to the spec")
    p.add_argument(
        "--drop-path",
        dest="drop_path_rate",
        type=float,
        help="stochastic depth: the last block's drop rate, rising linearly from 0 (timm's "
        "drop_path_rate; default: the spec's)",
    )
    p.add_argument("--output", required=True, help="run directory (rerun to resume)")
    _add_data_arguments(p, "the spec's input size")
    p.add_argument(
        "--recipe",
        choices=RECIPE_NAMES,
        help="start from a named recipe's defaults (keras_resnet.recipes, docs/training.md); "
        "the other flags override them",
    )
    p.add_argument("--epochs", type=int, help=f"default {constants.DEFAULT_EPOCHS}")
    p.add_argument(
        "--batch-size", type=int, help=f"global (default {constants.DEFAULT_BATCH_SIZE})"
    )
    p.add_argument("--optimizer", help=_choices(constants.OPTIMIZERS))
    p.add_argument(
        "--lr",
        dest="learning_rate",
        type=float,
        help=f"peak learning rate (default by optimizer: {constants.DEFAULT_LEARNING_RATE})",
    )
    p.add_argument("--schedule", help=_choices(constants.SCHEDULES))
    p.add_argument("--warmup-epochs", type=int, help=f"default {constants.DEFAULT_WARMUP_EPOCHS}")
    p.add_argument("--weight-decay", type=float, help=f"default {constants.DEFAULT_WEIGHT_DECAY}")
    p.add_argument("--label-smoothing", type=float, help="default 0")
    p.add_argument("--mixed-precision", help=_choices(constants.MIXED_PRECISION))
    p.add_argument(
        "--init-weights",
        help="start from a .weights.h5 of the spec (keras-resnet convert-weights): the "
        "backbone by layer name, the classifier only if its classes are the dataset's",
    )
    p.add_argument(
        "--strategy",
        choices=constants.STRATEGIES,
        help="auto (default): MirroredStrategy over several GPUs, else one device; "
        "multiworker: one worker of a MultiWorkerMirroredStrategy cluster read from TF_CONFIG "
        "(run the same command on every machine; see docs/distributed.md)",
    )
    _add_max_image_pixels(p)
    p.set_defaults(func=_cmd_train)


def _add_max_image_pixels(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-image-pixels",
        type=int,
        help="refuse images with more pixels before decoding any (default PIL's, 89,478,485)",
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from keras_resnet.training import train

    spec = _spec_from_args(args, default=constants.DEMO_MODEL)
    if getattr(args, "strategy", "auto") != "multiworker":
        train(spec, args.dataset, output_dir=args.output, **_given(args, TRAIN_KEYS))
        return 0
    return _train_multiworker(spec, args)


def _train_multiworker(spec, args: argparse.Namespace) -> int:
    """One worker of a MultiWorkerMirroredStrategy cluster: TF_CONFIG checked, then train.

    A worker that stops (killed, preempted) stops the others: each exits with one line,
    and rerunning the same command on every worker resumes.
    """
    import tensorflow as tf

    from keras_resnet.training import multiworker, train
    from keras_resnet.training.cluster import join_cluster, read_tf_config

    task = read_tf_config()  # before TensorFlow starts its server
    print(f"keras-resnet train: {task.describe()}", flush=True)
    strategy = join_cluster(task)
    peer_gone = (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError)
    previous_hook = threading.excepthook

    def quiet_peer_gone(hook_args) -> None:
        # TensorFlow's preemption watcher thread fails too when a peer dies (seen: its
        # traceback after our line); the main thread says it in one line.
        if not isinstance(hook_args.exc_value, peer_gone):
            previous_hook(hook_args)

    threading.excepthook = quiet_peer_gone
    try:
        train(spec, args.dataset, output_dir=args.output, strategy=strategy,
              **_given(args, TRAIN_KEYS))  # fmt: skip
    except multiworker.TrainingPreemptedError as e:
        print(f"keras-resnet train: {e}", file=sys.stderr)
        return multiworker.PREEMPTED_EXIT_CODE
    except peer_gone as e:
        print(
            f"keras-resnet train: another worker stopped ({type(e).__name__}); rerun the same "
            "command on every worker to resume from the last finished epoch",
            file=sys.stderr,
        )
        return 1
    finally:
        threading.excepthook = previous_hook
    return 0


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="train ResNet-20 on the offline digits (the main job)")
    p.add_argument("--output", default=constants.DEMO_RUN_DIR)
    p.add_argument(
        "--export",
        default=constants.DEMO_EXPORT_DIR,
        help="export the trained model here (every format; replaces only an earlier export, "
        "and only when the model meets the bar); '' to skip",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    """The main job: ResNet-20 on the offline digits, to >= 98% test accuracy, then export."""
    from keras_resnet.export import check_output_dir, export_run
    from keras_resnet.training import train

    if args.export:
        # Refused before the training, not after: --export replaces only an earlier export.
        check_output_dir(args.export, overwrite=True)
    metrics = train(
        constants.DEMO_MODEL,
        constants.DEMO_DATASET,
        output_dir=args.output,
        epochs=constants.DEMO_EPOCHS,
        batch_size=constants.DEMO_BATCH_SIZE,
        image_size=constants.DEMO_IMAGE_SIZE,
        seed=args.seed,
    )
    ok = metrics["test_accuracy"] >= constants.DEMO_ACCURACY_BAR
    # A model under the bar must not replace an earlier, good export.
    if args.export and ok:
        export_run(args.output, args.export, formats="all", overwrite=True)
    skipped = f"; export skipped, {args.export} left as it was" if args.export and not ok else ""
    print(
        f"demo: ResNet-20 on digits, test accuracy {metrics['test_accuracy']:.4f} "
        f"({'meets' if ok else 'MISSES'} the {constants.DEMO_ACCURACY_BAR} bar) in "
        f"{metrics['wall_seconds']:.0f} s{skipped}"
    )
    return 0 if ok else 1


# --- export --------------------------------------------------------------------------------


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="export a run or .keras file to .keras/SavedModel/TFLite")
    p.add_argument("source", help="a run directory (its best.keras) or a .keras file")
    p.add_argument("--output", help="directory to create (default saved_models/<source name>)")
    p.add_argument("--formats", help="all | tflite | comma list of " + ", ".join(constants.FORMATS))
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export at --output")
    p.add_argument("--dataset", help="calibration/verification data (default: the run's)")
    p.add_argument("--data-dir", help="tensorflow-datasets data_dir")
    p.add_argument(
        "--calibration-samples",
        type=int,
        help=f"int8 calibration images (default {constants.DEFAULT_CALIBRATION_SAMPLES})",
    )
    p.add_argument(
        "--verify-samples",
        type=int,
        help=f"test images compared (default {constants.DEFAULT_VERIFY_SAMPLES})",
    )
    p.add_argument(
        "--min-int8-agreement", type=float, help=f"default {constants.DEFAULT_MIN_INT8_AGREEMENT}"
    )
    p.add_argument(
        "--preprocessing",
        help="uint8 signature: "
        + _choices(constants.PREPROCESSING)
        + " (default: a pretrained tag's, else unit)",
    )
    p.add_argument("--top-k", type=int, help=f"default {constants.DEFAULT_TOP_K}")
    p.add_argument("--no-uint8-signature", dest="uint8_signature", action="store_false")
    p.add_argument(
        "--no-fold",
        dest="fold",
        action="store_false",
        help="keep BatchNormalization in the .keras/SavedModel/TFLite graph (default: folded "
        "into the convs, verified against the unfolded model)",
    )
    p.add_argument(
        "--latency-runs",
        type=int,
        help=f"batch-1 samples per TFLite file, the files timed in turns; the fastest "
        f"verified one is marked (default {constants.DEFAULT_LATENCY_RUNS}; 0: skip)",
    )
    p.add_argument(
        "--threads", dest="num_threads", type=int, help="LiteRT threads (default: all cores)"
    )
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from keras_resnet.export import export_run

    default = Path("saved_models") / Path(args.source).resolve().stem
    export_run(args.source, getattr(args, "output", str(default)), **_given(args, EXPORT_KEYS))
    return 0


# --- the command ---------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, and flags not given left out of the namespace.

    `argument_default=SUPPRESS` (for the subcommands' parsers too, which argparse makes
    of this class): a flag that was not given is absent, so the library's default applies.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("argument_default", argparse.SUPPRESS)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="keras-resnet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _add_list,
        _add_build,
        _add_convert_weights,
        _add_predict,
        _add_train,
        _add_export,
        _add_tune,
        _add_demo,
    ):
        add(sub)
    return parser


# What each command is doing, for the line printed before an unexpected traceback.
_DOING = {
    "list": "listing the named specs",
    "build": "building the model",
    "convert-weights": "converting the weights",
    "predict": "predicting",
    "train": "training",
    "export": "exporting",
    "tune": "searching",
    "demo": "running the demo",
}


def _import_tensorflow_quietly(command: str) -> None:
    """TensorFlow's import prints C++ notices (oneDNN, CPU features) before any of ours."""
    if command == "list":
        return  # needs no TensorFlow
    from keras_resnet._logs import quiet_native_logs

    with quiet_native_logs():
        import tensorflow  # noqa: F401


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command. Expected failures print one line and exit non-zero, no traceback:

    - 2: a bad argument (a library ValueError, which names the argument and the value);
    - 1: a failure of the work itself: a file that cannot be written (disk full,
      permissions), a training run that diverged, a search that could not finish;
    - 130 / 143: interrupted by SIGINT (Ctrl-C) / SIGTERM; rerunning the same command
      resumes. A second signal stops the process at once (`keras_resnet._signals`).

    Anything else is a bug: one line says what the command was doing, then the traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    prefix = f"{parser.prog} {args.command}: error:"
    try:
        with interruptible(prefix):
            _import_tensorflow_quietly(args.command)
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
    except KeyboardInterrupt as e:
        parser.exit(exit_code(e), f"{prefix} interrupted; rerun the same command to resume.\n")
    except Exception:
        print(
            f"{parser.prog} {args.command}: internal error while {_DOING[args.command]} "
            "(a bug; please report it with the traceback below):",
            file=sys.stderr,
        )
        raise


def console_main() -> int:
    """The `keras-resnet` command: `main`, then a signal during the interpreter's shutdown
    leaves the command's own exit code (`ignore_signals_from_now`)."""
    try:
        return main()
    finally:
        ignore_signals_from_now()


if __name__ == "__main__":
    sys.exit(console_main())
