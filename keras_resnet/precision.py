"""Mixed precision: the dtype policy a run trains under, and `"auto"`, which asks the hardware.

`resolve_mixed_precision("auto")` picks, for the device that will train:

- a visible GPU trains: `"mixed_float16"` when every visible GPU has compute
  capability 7.0 or more (tensor cores: Volta, Turing, Ampere and later),
  else None (float32: older GPUs gain nothing from float16);
- no GPU, a CPU that lists `avx512_bf16` or `amx_bf16` among its flags
  (Cooper Lake, Sapphire Rapids and later; Zen 4): `"mixed_bfloat16"`, which
  TensorFlow's oneDNN kernels run natively;
- anything else: None (float32).

Under either mixed policy variables stay float32; `keras_resnet.training`
keeps the classifier's softmax (and so the loss) in float32.

>>> resolve_mixed_precision("mixed_float16")
'mixed_float16'
>>> resolve_mixed_precision("auto") in (None, "mixed_float16", "mixed_bfloat16")
True
"""

from __future__ import annotations

from keras_resnet._checks import check_choice
from keras_resnet.constants import MIXED_PRECISION

CPUINFO = "/proc/cpuinfo"
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
"""CPU flags (as /proc/cpuinfo spells them) of native bfloat16 arithmetic."""
MIN_FLOAT16_COMPUTE_CAPABILITY = (7, 0)
INT8_DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")
"""CPU flags of int8 dot-product instructions (x86 VNNI and AMX, ARM's dot product), which
LiteRT's int8 kernels need to beat float32 (the ratios with and without: docs/export.md)."""


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (x86 `flags`, ARM `Features`); empty if none."""
    try:
        with open(CPUINFO, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def gpu_compute_capabilities() -> list[tuple[int, int] | None]:
    """Each visible GPU's CUDA compute capability (None where TensorFlow does not report one)."""
    import tensorflow as tf

    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capability = details.get("compute_capability")
        capabilities.append(tuple(capability) if capability else None)
    return capabilities


def auto_policy() -> tuple[str | None, str]:
    """The policy `"auto"` stands for on this machine, and why (for the run's log and record)."""
    gpus = gpu_compute_capabilities()
    if gpus:
        known = [c for c in gpus if c is not None]
        oldest = min(known) if len(known) == len(gpus) else None
        if oldest is not None and oldest >= MIN_FLOAT16_COMPUTE_CAPABILITY:
            return "mixed_float16", f"GPU compute capability {oldest[0]}.{oldest[1]}"
        shown = "unknown" if oldest is None else f"{oldest[0]}.{oldest[1]}"
        return None, f"GPU compute capability {shown}, below 7.0"
    flags = sorted(cpu_flags() & set(BF16_CPU_FLAGS))
    if flags:
        return "mixed_bfloat16", f"CPU with {', '.join(flags)}, no GPU"
    return None, "no GPU, no bfloat16 CPU flags (avx512_bf16, amx_bf16)"


def int8_dot_product_flags(flags: frozenset[str] | None = None) -> list[str]:
    """Which of `INT8_DOT_PRODUCT_FLAGS` the CPU (or the given `flags`) has, sorted."""
    return sorted((cpu_flags() if flags is None else flags) & set(INT8_DOT_PRODUCT_FLAGS))


def expected_fastest_tflite(flags: frozenset[str] | None = None) -> tuple[str, str]:
    """The TFLite form expected to run fastest on this CPU without measuring, and why.

    `"tflite-int8"` where the CPU has int8 dot-product instructions, else
    `"tflite-fp32"` (LiteRT runs fp16 weights in float32 on CPUs; without dot
    products int8 gains nothing). `keras-resnet export` measures every variant and
    names the fastest verified one; this is the guess for when nothing is measured.

    >>> expected_fastest_tflite(frozenset({"avx512_vnni"}))
    ('tflite-int8', 'CPU with avx512_vnni (int8 dot products)')
    """
    found = int8_dot_product_flags(flags)
    if found:
        return "tflite-int8", f"CPU with {', '.join(found)} (int8 dot products)"
    wanted = ", ".join(INT8_DOT_PRODUCT_FLAGS)
    return "tflite-fp32", f"no int8 dot-product CPU flags ({wanted})"


def explain_mixed_precision(value: str | None) -> tuple[str | None, str]:
    """`resolve_mixed_precision(value)` and, in a few words, why (printed by `train`)."""
    check_choice("mixed_precision", value, MIXED_PRECISION)
    return auto_policy() if value == "auto" else (value, "as asked")


def resolve_mixed_precision(value: str | None) -> str | None:
    """`value` checked, with `"auto"` replaced by what this machine trains fastest with.

    Args:
        value: None (float32), `"mixed_float16"`, `"mixed_bfloat16"` or `"auto"`.

    Returns:
        The Keras dtype policy name to set, or None for float32.

    Raises:
        ValueError: `value` is none of those.

    Example:

    >>> resolve_mixed_precision(None) is None
    True
    """
    return explain_mixed_precision(value)[0]
