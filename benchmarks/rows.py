"""The table of A/B rows: a name, a candidate, a reference and a target ratio each, as data.

A row times two calls side by side the way the `forward` section does
(`timing.measure`: warmed up, interleaved, `forward_reps` repetitions of
samples that last `min_sample_seconds`) and is reported like every other
ratio: candidate speed / reference speed, with its 95% interval, against the
row's target (None: reported, no target). A comparison is one more `Row` in
`ROWS`, made of the side factories below:

    Row(
        "forward ResNet50 mixed_bfloat16 vs float32, batch 32",
        candidate=forward(keras_resnet_net("ResNet50", dtype_policy="mixed_bfloat16"), 32),
        reference=forward(keras_resnet_net("ResNet50"), 32),
        target=1.0,
    )

Networks are built at `Settings.image_size` (224, `--quick` 32) with 3 channels
and random weights; a network these factories do not name is a `Net` of its
own (a description and `build(input_shape) -> keras.Model`). With `ROWS`
empty the `rows` section does not run and the results file has no such
section; its rows otherwise sit in `sections.rows.rows`, keyed by name.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks import timing
from benchmarks.common import Context, Settings, fmt_ratio, free, log
from benchmarks.models import compile_for_training, forward_call, train_call

Shape = tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class Net:
    """A network a side is made of: what it is, and how to build it for an input shape."""

    what: str
    build: Callable[[Shape], Any]


def keras_resnet_net(name: str, *, dtype_policy: str | None = None, **kwargs: Any) -> Net:
    """`keras_resnet.<name>(weights=None, ...)`, built under `dtype_policy` if given."""

    def build(shape: Shape):
        import keras

        import keras_resnet

        previous = keras.config.dtype_policy()
        if dtype_policy:
            keras.config.set_dtype_policy(dtype_policy)
        try:
            return getattr(keras_resnet, name)(weights=None, input_shape=shape, **kwargs)
        finally:
            keras.config.set_dtype_policy(previous)

    return Net(f"keras_resnet.{name}" + (f" ({dtype_policy})" if dtype_policy else ""), build)


def applications_net(name: str, **kwargs: Any) -> Net:
    """`keras.applications.<name>(weights=None, ...)`."""

    def build(shape: Shape):
        import keras

        return getattr(keras.applications, name)(weights=None, input_shape=shape, **kwargs)

    return Net(f"keras.applications.{name}", build)


def spec_net(spec: str, **kwargs: Any) -> Net:
    """`build_resnet(get_spec(spec), ...)`: any named spec, including those without a function."""

    def build(shape: Shape):
        from keras_resnet import build_resnet, get_spec

        return build_resnet(get_spec(spec), input_shape=shape, **kwargs)

    return Net(f"build_resnet(get_spec({spec!r}))", build)


@dataclasses.dataclass(frozen=True)
class Side:
    """One side of a row: what it runs, how to make the call, the images one call handles."""

    what: str
    make: Callable[[Settings], Callable[[], Any]]
    work: int = 1


def _shape(s: Settings) -> Shape:
    return (s.image_size, s.image_size, 3)


def forward(net: Net, batch: int, call: str = "predict_on_batch") -> Side:
    """A forward pass of a random batch (`call`: a key of `models.FORWARD_CALLS`)."""

    def make(s: Settings) -> Callable[[], Any]:
        images = np.random.default_rng(5).random((batch, *_shape(s)), dtype=np.float32)
        return forward_call(net.build(_shape(s)), images, call)

    return Side(f"{net.what} {call}, batch {batch}", make, work=batch)


def train_step(net: Net, batch: int, *, jit_compile: bool | str = "auto") -> Side:
    """One `train_on_batch` of a random batch, SGD with momentum (`models.compile_for_training`).

    `jit_compile` is `model.compile`'s ("auto": Keras' choice, XLA off on a CPU-only host).
    """

    def make(s: Settings) -> Callable[[], Any]:
        model = net.build(_shape(s))
        compile_for_training(model, jit_compile=jit_compile)
        rng = np.random.default_rng(6)
        images = rng.random((batch, *_shape(s)), dtype=np.float32)
        return train_call(model, images, rng.integers(0, model.output_shape[-1], batch))

    xla = "" if jit_compile == "auto" else f" jit_compile={jit_compile}"
    return Side(f"{net.what} train_on_batch{xla}, batch {batch}", make, work=batch)


def tflite(net: Net, variant: str, *, num_threads: int | None = None) -> Side:
    """One batch-1 LiteRT invocation of `net` converted by `keras_resnet.export.convert_tflite`.

    int8 is calibrated on 32 uniform random images; the timed input is random too
    (latency does not depend on the values).
    """

    def make(s: Settings) -> Callable[[], Any]:
        from ai_edge_litert.interpreter import Interpreter

        from keras_resnet import export

        rng = np.random.default_rng(7)
        calibration = rng.random((32, *_shape(s)), dtype=np.float32)
        content = export.convert_tflite(
            net.build(_shape(s)), variant, calibration if variant == "int8" else None
        )
        interpreter = Interpreter(model_content=content, num_threads=num_threads or os.cpu_count())
        detail = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(detail["index"], [1, *_shape(s)])
        interpreter.allocate_tensors()
        dtype = np.dtype(detail["dtype"])
        if dtype.kind == "f":
            x = rng.random((1, *_shape(s))).astype(dtype)
        else:
            x = rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max, (1, *_shape(s)), dtype)
        interpreter.set_tensor(detail["index"], x)
        return interpreter.invoke

    return Side(f"{net.what} TFLite {variant}, batch 1", make, work=1)


@dataclasses.dataclass(frozen=True)
class Row:
    """One comparison: candidate speed / reference speed, against `target` when set."""

    name: str
    candidate: Side
    reference: Side
    target: float | None = None

    def __post_init__(self) -> None:
        if self.candidate.work != self.reference.work:
            raise ValueError(
                f"row {self.name!r}: both sides must handle the same images per call "
                f"(throughputs are compared). Received: {self.candidate.work} and "
                f"{self.reference.work}"
            )


def folded_net(name: str, *, dtype_policy: str | None = None) -> Net:
    """`keras_resnet.fold_batchnorm(keras_resnet.<name>(weights=None))`: the inference form."""
    plain = keras_resnet_net(name, dtype_policy=dtype_policy)

    def build(shape: Shape):
        from keras_resnet import fold_batchnorm

        return fold_batchnorm(plain.build(shape))

    return Net(f"fold_batchnorm({plain.what})", build)


def compiled_net(net: Net, *, jit_compile: bool) -> Net:
    """`net` compiled with `jit_compile` (XLA on or off), which its `predict_on_batch` uses."""

    def build(shape: Shape):
        model = net.build(shape)
        compile_for_training(model, jit_compile=jit_compile)
        return model

    return Net(f"{net.what} jit_compile={jit_compile}", build)


def bf16_export_net(name: str) -> Net:
    """The export's `keras_bf16` form of `keras_resnet.<name>`: folded, then bfloat16."""
    folded = folded_net(name)

    def build(shape: Shape):
        from keras_resnet.export.keras_bf16 import bfloat16_model

        return bfloat16_model(folded.build(shape))

    return Net(f"keras_bf16 of {folded.what}", build)


def _cpu_has(*flags: str) -> bool:
    from keras_resnet.precision import cpu_flags

    return bool(set(flags) & cpu_flags())


#: bfloat16 rows run only where the CPU computes in bfloat16 (AVX-512 BF16 or AMX);
#: elsewhere they would measure an emulation nobody should use.
BF16_CPU = _cpu_has("avx512_bf16", "amx_bf16")


def _int8_isa() -> str:
    """The CPU's int8 dot-product instructions (x86 VNNI, AMX, ARM dotprod), named."""
    from keras_resnet.precision import cpu_flags

    found = sorted({"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"} & cpu_flags())
    return ", ".join(found) if found else "no int8 dot-product instructions: not expected faster"


# The rows `make bench` times, in report order.
ROWS: tuple[Row, ...] = (
    # #17: the inference form, bfloat16 and int8 (targets from the issue).
    Row(
        "forward fold_batchnorm(ResNet50) vs keras.applications ResNet50, batch 32",
        candidate=forward(folded_net("ResNet50"), 32),
        reference=forward(applications_net("ResNet50"), 32),
        target=1.12,
    ),
    *(
        (
            Row(
                "forward fold_batchnorm(ResNet50) mixed_bfloat16 vs keras.applications "
                "ResNet50, batch 32",
                candidate=forward(folded_net("ResNet50", dtype_policy="mixed_bfloat16"), 32),
                reference=forward(applications_net("ResNet50"), 32),
                target=1.40,
            ),
            Row(
                "train step ResNet50 mixed_bfloat16 vs float32, batch 16",
                candidate=train_step(
                    keras_resnet_net("ResNet50", dtype_policy="mixed_bfloat16"), 16
                ),
                reference=train_step(keras_resnet_net("ResNet50"), 16),
                target=1.30,
            ),
        )
        if BF16_CPU
        else ()
    ),
    # The export's keras_bf16 artifact against the float32 folded model it is made from.
    *(
        Row(
            f"forward keras_bf16 vs fold_batchnorm(ResNet50) float32, batch {batch}",
            candidate=forward(bf16_export_net("ResNet50"), batch, "tf.function"),
            reference=forward(folded_net("ResNet50"), batch, "tf.function"),
        )
        for batch in ((1, 32) if BF16_CPU else ())
    ),
    # XLA on a CPU (Keras' jit_compile="auto" leaves it off without a GPU): measured, so
    # the default is a finding; the GPU section measures it on GPUs.
    Row(
        "train step ResNet50 jit_compile=True vs False, batch 16",
        candidate=train_step(keras_resnet_net("ResNet50"), 16, jit_compile=True),
        reference=train_step(keras_resnet_net("ResNet50"), 16, jit_compile=False),
    ),
    Row(
        "forward ResNet50 jit_compile=True vs False, batch 32",
        candidate=forward(compiled_net(keras_resnet_net("ResNet50"), jit_compile=True), 32),
        reference=forward(compiled_net(keras_resnet_net("ResNet50"), jit_compile=False), 32),
    ),
    Row(
        f"TFLite ResNet50 int8 vs fp32, batch 1 (int8 instructions: {_int8_isa()})",
        candidate=tflite(keras_resnet_net("ResNet50"), "int8"),
        reference=tflite(keras_resnet_net("ResNet50"), "fp32"),
    ),
    # What each family variant costs against the network users compare with (no target:
    # ResNet-D and SE add work; the ratio says how much).
    *(
        Row(
            f"forward {name} vs keras.applications ResNet50, batch 32",
            candidate=forward(keras_resnet_net(name), 32),
            reference=forward(applications_net("ResNet50"), 32),
        )
        for name in ("ResNet50D", "SEResNet50")
    ),
)


def run_row(row: Row, s: Settings) -> dict[str, Any]:
    """The row's `timing.compare` record, with what each side ran and the target."""
    record = timing.measure(
        row.candidate.make(s),
        row.reference.make(s),
        reps=s.forward_reps,
        min_sample_seconds=s.min_sample_seconds,
        work=row.candidate.work,
    )
    log(
        f"{row.name}: {record['ours_images_per_second']:.1f} vs "
        f"{record['reference_images_per_second']:.1f} images/s, "
        f"speed {fmt_ratio(record['speed_ratio'])}"
    )
    return {
        "candidate": row.candidate.what,
        "reference": row.reference.what,
        "target": row.target,
        **record,
    }


def section_rows(ctx: Context, *, table: tuple[Row, ...] = ROWS) -> dict[str, Any]:
    out: dict[str, Any] = {
        "what": (
            "benchmarks/rows.py: each row's candidate against its reference, interleaved "
            "(the `ours_*` figures are the candidate's)"
        ),
        "rows": {},
    }
    for row in table:
        out["rows"][row.name] = run_row(row, ctx.settings)
        free()
    return out
