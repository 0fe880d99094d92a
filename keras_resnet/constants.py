"""Choices and defaults shared by the library and the `keras-resnet` command.

This module imports nothing heavy (no TensorFlow, no Keras), so the command
line can list choices and defaults, and check its arguments, without paying
for TensorFlow's import; the modules that use these values import them from
here, so the CLI never retypes them.
"""

from __future__ import annotations

# --- training -------------------------------------------------------------------------------

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step", "constant")
MIXED_PRECISION = (None, "mixed_float16", "mixed_bfloat16", "auto")
"""`auto`: what the hardware trains fastest with (keras_resnet.precision)."""
DEFAULT_LEARNING_RATE = {"sgd": 0.1, "adam": 1e-3, "adamw": 1e-3}
DEFAULT_WEIGHT_DECAY = {"sgd": 1e-4, "adam": 0.0, "adamw": 0.05}
DEFAULT_EPOCHS = 30
DEFAULT_BATCH_SIZE = 64
DEFAULT_WARMUP_EPOCHS = 1
AUGMENTATIONS = ("translate", "random-resized-crop")
"""Training augmentation (`augment=True`): `translate`, CIFAR's 4-pixel shift on batches;
`random-resized-crop`, ImageNet's per-image crop (keras_resnet.data.crops); both flip."""
STRATEGIES = ("auto", "multiworker")
"""`keras-resnet train --strategy`: auto is `default_strategy()` (MirroredStrategy over several
GPUs, else one device) with `model.fit`; multiworker is MultiWorkerMirroredStrategy over the
cluster in TF_CONFIG, trained by the custom loop (docs/distributed.md)."""

# The demo (`make demo`): 16x16 digits reach 98%+ in a few minutes on 2 cores (32x32 costs
# 4x the time for the same accuracy).
DEMO_MODEL = "resnet20"
DEMO_DATASET = "digits"
DEMO_EPOCHS, DEMO_BATCH_SIZE, DEMO_IMAGE_SIZE = 40, 64, 16
DEMO_ACCURACY_BAR = 0.98
DEMO_RUN_DIR = "runs/demo"
DEMO_EXPORT_DIR = "saved_models/digits-resnet20"

# --- tuning ---------------------------------------------------------------------------------

TUNERS = ("hyperband", "random", "bayesian")
OBJECTIVES = {"val_accuracy": "max", "val_loss": "min"}
ROLES = ("chief", "worker")
DEFAULT_WIDTHS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
DEFAULT_OPTIMIZERS = ("sgd", "adam")
DEFAULT_BATCH_SIZES = (32, 64, 128)
DEFAULT_ORACLE_TIMEOUT = 30.0
"""Seconds a worker waits for its chief: to connect, and for each call (keras-tuner: 1 hour)."""
AUTO_TARGET = "auto"
LATENCY_TARGETS = ("keras", "tflite-fp32", "tflite-fp16", "tflite-int8", AUTO_TARGET)
"""What a candidate's latency is measured on: Keras' tf.function, or a LiteRT variant;
`auto` is the TFLite form `keras_resnet.precision.expected_fastest_tflite` expects to run
fastest here (int8 on CPUs with int8 dot products, else fp32), as the export recommends."""
DEFAULT_LATENCY_TARGET = "keras"
"""Not `auto`: a tflite target converts every trained candidate (seconds each), which
would slow every search (and the test suite's many small ones) that sets no latency
budget at all; `--latency-target auto` asks for it (docs/tuning.md)."""

# --- export ---------------------------------------------------------------------------------

TFLITE_VARIANTS = ("fp32", "fp16", "dynamic", "int8")
FORMATS = (
    "keras",
    "keras_bf16",
    "saved_model",
    *(f"tflite_{v}" for v in TFLITE_VARIANTS),
    "onnx",
)
OPT_IN_FORMATS = ("keras_bf16", "onnx")
"""Written only when named: `keras_bf16` (the folded model computing in bfloat16: faster on
CPUs with avx512_bf16/amx_bf16 for large inputs and batches, slower for small ones; see
docs/export.md) and `onnx` (an optional extra; "all" adds it when installed)."""
DEFAULT_FORMATS = tuple(f for f in FORMATS if f not in OPT_IN_FORMATS)
"""What "all" means when ONNX's optional extra is not installed."""
PREPROCESSING = ("unit", "caffe", "tf", "torch", "none")
DEFAULT_CALIBRATION_SAMPLES = 200
DEFAULT_VERIFY_SAMPLES = 1000
DEFAULT_LATENCY_RUNS = 50
DEFAULT_TOP_K = 5
DEFAULT_MIN_INT8_AGREEMENT = 0.99
