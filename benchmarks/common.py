"""What every benchmark section shares: the settings, the context, logging, freeing memory."""

from __future__ import annotations

import dataclasses
import gc
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes and repetition counts; `FULL` for `make bench`, `QUICK` for the smoke test."""

    quick: bool = False
    build_models: tuple[str, ...] = ("ResNet50", "ResNet152")
    build_reps: int = 7
    forward_models: tuple[str, ...] = ("ResNet50", "ResNet50V2")
    image_size: int = 224  # forward, train, flops, the table's rows and the ResNet50 TFLite rows
    batches: tuple[int, ...] = (1, 32)
    forward_reps: int = 11  # also the repetitions of every row of benchmarks/rows.py
    min_sample_seconds: float = 0.5  # a sample repeats calls until it lasts this long
    train_batch: int = 16
    train_reps: int = 8
    matmul_sizes: tuple[int, ...] = (1024, 2048, 4096)
    flops_batch: int = 32
    flops_reps: int = 9
    import_reps: int = 11
    digits_epochs: int | None = None  # None: the demo's own epochs
    tflite_models: tuple[str, ...] = ("ResNet50", "ResNet20")
    tflite_rounds: int = 7
    tflite_runs: int = 20  # invocations per round; a round's figure is their median
    representative_images: int = 32
    eval_images: int = 16  # ResNet50 outputs compared with Keras (ResNet-20: the test split)
    gpu_model: str = "ResNet50"
    gpu_image_size: int = 224
    gpu_batch: int = 64
    gpu_reps: int = 9
    gpu_xla: tuple[bool, ...] = (False, True)  # jit_compile of each policy's model


FULL = Settings()
QUICK = Settings(
    quick=True,
    build_models=("ResNet50",),
    build_reps=2,
    forward_models=("ResNet50",),
    image_size=32,
    forward_reps=3,
    min_sample_seconds=0.05,
    train_reps=2,
    matmul_sizes=(256, 512),
    flops_reps=3,
    import_reps=1,
    digits_epochs=1,
    tflite_models=("ResNet20",),
    tflite_rounds=2,
    tflite_runs=5,
    representative_images=8,
    eval_images=4,
    gpu_model="ResNet20",
    gpu_image_size=8,
    gpu_batch=2,
    gpu_reps=2,
)


@dataclasses.dataclass
class Context:
    """What sections share: a scratch directory and the trained ResNet-20 of `digits`."""

    settings: Settings
    scratch: Path
    digits_model: Path | None = None


def log(message: str) -> None:
    print(message, flush=True)


def free() -> None:
    """Drops the models of the section (or row) that just ran: Keras' session, then the GC."""
    import keras

    keras.backend.clear_session()
    gc.collect()


def fmt_ratio(ratio: dict[str, Any]) -> str:
    ci = ratio["ci95"]
    band = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    return f"{ratio['ratio']:.3f}x{band}"
