"""Turns a benchmark results file into the README performance tables and a PNG chart.

    python -m benchmarks.report [--results FILE_OR_DIR] [--readme FILE ...] [--chart PNG]
                                [--check]

The tables are written between marker lines, never typed by hand:

    <!-- bench:summary:start --> ... <!-- bench:summary:end -->   ratios and targets
    <!-- bench:detail:start --> ... <!-- bench:detail:end -->     every figure

Each README gets the blocks whose markers it has (README.md: the summary;
benchmarks/README.md: both). `--results` defaults to the newest full run in
benchmarks/results/ (quick, partial and failed runs are only used when named);
`--check` writes nothing and exits 1 when a README is not what the results
file generates.

Every ratio is keras_resnet / reference *speed* (throughput, or the inverse of
a time), so above 1.00 means keras_resnet is faster; 95% bootstrap intervals
in brackets.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks import timing

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
READMES = (BENCH_DIR.parent / "README.md", BENCH_DIR / "README.md")
BLOCKS = ("summary", "detail")

PARITY = 1.00  # forward, train and build: at least keras.applications' speed
MATMUL_FRACTION = 0.85  # ResNet50 forward at batch 32 against the matmul rate
INT8_SPEEDUP = 3.0  # int8 TFLite against fp32 TFLite
IMPORT_EXTRA_SECONDS = 0.3  # import keras_resnet against import keras


# --- figures derived from the sections ----------------------------------------------------


def _row(name: str, ratio: dict[str, Any], target: float | None, **extra: Any) -> dict:
    return {"name": name, "ratio": ratio["ratio"], "ci95": ratio["ci95"], "target": target, **extra}


def _build_ratios(build: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        _row(
            f"build {model}",
            rec["speed_ratio"],
            PARITY,
            unit="s",
            ours=rec["ours_seconds"]["median"],
            reference=rec["reference_seconds"]["median"],
        )
        for model, rec in build.get("models", {}).items()
    ]


def _forward_ratios(forward: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        _row(
            f"forward {model} batch {key[6:]} ({mode})",
            cmp["speed_ratio"],
            PARITY,
            unit="images/s",
            ours=cmp["ours_images_per_second"],
            reference=cmp["reference_images_per_second"],
        )
        for model, rec in forward.get("models", {}).items()
        for key, modes in rec.items()
        if key.startswith("batch_")
        for mode, cmp in modes.items()
    ]


def _train_ratios(train: dict[str, Any]) -> list[dict[str, Any]]:
    if "comparison" not in train:
        return []
    cmp = train["comparison"]
    return [
        _row(
            f"train step {train['model']} batch {train['batch']}",
            cmp["speed_ratio"],
            PARITY,
            unit="images/s",
            ours=cmp["ours_images_per_second"],
            reference=cmp["reference_images_per_second"],
        )
    ]


def _import_ratios(imp: dict[str, Any]) -> list[dict[str, Any]]:
    if "speed_ratio" not in imp:
        return []
    return [
        _row(
            "import keras_resnet vs import keras",
            imp["speed_ratio"],
            None,
            unit="s",
            ours=imp["ours_seconds"]["median"],
            reference=imp["reference_seconds"]["median"],
        )
    ]


def _flops_ratios(flops: dict[str, Any]) -> list[dict[str, Any]]:
    if "fraction_of_matmul" not in flops:
        return []
    return [
        _row(
            f"ResNet50 forward GFLOP/s / matmul GFLOP/s (batch {flops['batch']})",
            flops["fraction_of_matmul"],
            MATMUL_FRACTION,
            unit="GFLOP/s",
            ours=flops["resnet50_gflops"],
            reference=flops["matmul_best_gflops"],
        )
    ]


def _tflite_ratios(tflite: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for model, rec in tflite.get("models", {}).items():
        variants = rec["variants"]
        fp32_ms = variants["fp32"]["latency_ms"]["median"]
        rows += [
            _row(
                f"TFLite {model} {variant} vs fp32 TFLite",
                v["speedup_vs_fp32"],
                INT8_SPEEDUP if variant == "int8" else None,
                unit="ms",
                ours=v["latency_ms"]["median"],
                reference=fp32_ms,
            )
            for variant, v in variants.items()
            if variant != "fp32"
        ]
        rows += [
            _row(
                f"TFLite {model} {variant} vs Keras predict_on_batch",
                v["speedup_vs_keras"],
                None,
                unit="ms",
                ours=v["latency_ms"]["median"],
                reference=rec["keras_latency_ms"]["median"],
            )
            for variant, v in variants.items()
        ]
    return rows


def _gpu_ratios(gpu: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        _row(
            f"GPU {gpu['model']} {key} vs float32",
            rec["speedup_vs_float32"],
            None,
            unit="images/s",
            ours=rec["images_per_second"],
            reference=None,
        )
        for key, rec in gpu.get("configs", {}).items()
        if "+" in key or "mixed" in key
    ]


# Each section's speed ratios, in report order.
RATIOS = {
    "build": _build_ratios,
    "forward": _forward_ratios,
    "train": _train_ratios,
    "import": _import_ratios,
    "flops": _flops_ratios,
    "tflite": _tflite_ratios,
    "gpu": _gpu_ratios,
}


def ratios(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every speed ratio in the results, in report order, with its target where one is set.

    Example:
        >>> ratios({"sections": {}})
        []
    """
    sections = results.get("sections", {})
    return [row for name, rows_of in RATIOS.items() for row in rows_of(sections.get(name, {}))]


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value, whether it is met, and by how much not.

    A target counts as met when the figure reaches it or its 95% interval does
    (the benchmark cannot tell them apart). `shortfall` is how far the figure is
    from the target (a fraction of the target for ratios, seconds for import).
    """
    rows = []
    for r in ratios(results):
        if r["target"] is None:
            continue
        met = timing.within_noise_at_least(r, r["target"])
        rows.append(
            {
                "name": r["name"],
                "target": f">= {r['target']:.2f}x",
                "value": r["ratio"],
                "ci95": r["ci95"],
                "met": met,
                "shortfall": None if met else (r["target"] - r["ratio"]) / r["target"],
            }
        )
    imp = results.get("sections", {}).get("import", {})
    if "extra_seconds" in imp:
        extra = imp["extra_seconds"]
        # The median itself must be within the allowance (an interval that merely
        # touches it is not enough: the target is an upper bound on a cost).
        met = extra["delta"] <= IMPORT_EXTRA_SECONDS
        rows.append(
            {
                "name": "import keras_resnet - import keras (s)",
                "target": f"<= +{IMPORT_EXTRA_SECONDS:.2f} s",
                "value": extra["delta"],
                "ci95": extra["ci95"],
                "met": met,
                "shortfall": None if met else extra["delta"] - IMPORT_EXTRA_SECONDS,
            }
        )
    return rows


# --- text ---------------------------------------------------------------------------------


def _ci(ci: list[float] | None, fmt: str = "{:.2f}") -> str:
    return f" [{fmt.format(ci[0])}, {fmt.format(ci[1])}]" if ci else ""


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()


def _status(target: dict[str, Any] | None) -> str:
    if target is None:
        return ""
    if target["met"]:
        return "met"
    if target["name"].startswith("import"):
        return f"missed by {target['shortfall']:.2f} s"
    return f"missed by {100 * target['shortfall']:.0f}%"


def _load_note(load: dict[str, Any], cores: int) -> str:
    """How to read the load average: the benchmark itself keeps about `cores` threads busy."""
    peak = max(
        (float(v[0]) for v in load.values() if isinstance(v, (list, tuple)) and v), default=0.0
    )
    if peak > cores + 1:
        return f"above {cores + 1}: other processes competed for the {cores} cores"
    return f"the benchmark's own threads account for up to about {cores} of it"


def _header(results: dict[str, Any], source: str) -> str:
    m, v = results["machine"], results["versions"]
    load = results.get("load_average", {})
    cpu = m["cpu"]
    cores = f"{m['logical_cores']} logical cores"
    if cpu.get("physical_cores"):
        cores += f" / {cpu['physical_cores']} physical"
    gpus = ", ".join(g["name"] for g in m.get("gpus", [])) or "no GPU"
    kind = "" if results.get("kind") == "full" else f" **{results.get('kind')} run**,"
    return (
        f"Measured{kind} {results['date']} on {cpu['model']} ({cores}, {m['ram_gib']} GiB, "
        f"{gpus}); TensorFlow {v['tensorflow']}, Keras {v['keras']}, keras_resnet "
        f"{v['keras_resnet']}, ai-edge-litert {v.get('ai_edge_litert') or '-'}. Load average "
        f"{load.get('start', ['?'])[0]} at the start, {load.get('end', ['?'])[0]} at the end "
        f"({_load_note(load, m['logical_cores'])}). "
        f"Source: `{source}`; generated by `python -m benchmarks.report`, do not edit."
    )


def summary_markdown(results: dict[str, Any], source: str, *, every_ratio: bool = False) -> str:
    """The ratios that have a target (or all of them), the targets, digits and GPU lines."""
    by_name = {t["name"]: t for t in targets(results)}
    lines = [
        _header(results, source),
        "",
        "Ratio: keras_resnet speed / reference speed (above 1.00: keras_resnet faster), "
        "median of interleaved repetitions, 95% bootstrap interval in brackets.",
        "",
        "| figure | keras_resnet | reference | ratio | target | |",
        "|---|---:|---:|---|---|---|",
    ]
    for r in ratios(results):
        target = by_name.get(r["name"])
        if target is None and not every_ratio:
            continue
        lines.append(
            f"| {r['name']} | {_num(r['ours'], r['unit'])} | {_num(r['reference'], r['unit'])} "
            f"| {r['ratio']:.2f}{_ci(r['ci95'])} "
            f"| {target['target'] if target else ''} | {_status(target)} |"
        )
    imp = by_name.get("import keras_resnet - import keras (s)")
    if imp:
        lines.append(
            f"| import keras_resnet - import keras | | | {imp['value']:+.3f} s"
            f"{_ci(imp['ci95'], '{:+.3f}')} | {imp['target']} | {_status(imp)} |"
        )
    digits = results.get("sections", {}).get("digits", {})
    if "train_images_per_second" in digits:
        t98 = digits.get("time_to_98_seconds")
        lines += [
            "",
            f"ResNet-20 on the digits pipeline: {_num(digits['train_images_per_second'])} "
            "training images/s; the demo reaches 98% validation accuracy "
            + (
                f"in {t98:.0f} s (epoch {digits['epochs_to_98']})"
                if t98 is not None
                else f"(not measured: {digits.get('time_to_98_note')})"
            )
            + f", test accuracy {digits['test_accuracy']:.4f} after {digits['epochs']} epoch(s).",
        ]
    gpu = results.get("sections", {}).get("gpu", {})
    if "skipped" in gpu:
        lines += ["", f"GPU section skipped: {gpu['skipped']}."]
    return "\n".join(lines)


def _ratio_text(r: dict[str, Any]) -> str:
    return f"{r['ratio']:.2f}{_ci(r['ci95'])}"


def _flops_markdown(sections: dict[str, Any]) -> list[str]:
    flops = sections.get("flops", {})
    if "resnet50_gflops" not in flops:
        return []
    profiled = flops.get("profiler_flops_per_image")
    text = (
        "**ResNet50 forward against the matmul rate.** "
        f"{flops['flops_per_image'] / 1e9:.3f} GFLOPs per {flops['image_size']}px image "
        "(2 x conv and dense MACs"
        + (f"; TF profiler: {profiled / 1e9:.3f}" if profiled else "")
        + f"); at batch {flops['batch']} (predict_on_batch) "
        f"{flops['resnet50_gflops']:.1f} GFLOP/s. fp32 matmul: "
        + ", ".join(f"n={n} {m['gflops']:.1f}" for n, m in flops["matmul"].items())
        + f" GFLOP/s; the best, {flops['matmul_best_gflops']:.1f}, is the limit used: "
        f"fraction {flops['fraction_of_matmul']['ratio']:.2f}"
        f"{_ci(flops['fraction_of_matmul']['ci95'])}."
    )
    tflite_r50 = sections.get("tflite", {}).get("models", {}).get("ResNet50")
    if tflite_r50 and tflite_r50["input_shape"][0] == flops["image_size"]:
        ms = tflite_r50["variants"]["fp32"]["latency_ms"]["median"]
        text += (
            f" For comparison, fp32 TFLite (XNNPACK) runs ResNet50 at batch 1 in "
            f"{ms:.1f} ms: {flops['flops_per_image'] / ms / 1e6:.1f} GFLOP/s."
        )
    return ["", text]


def _tflite_markdown(tflite: dict[str, Any]) -> list[str]:
    if not tflite.get("models"):
        return []
    lines = [
        "",
        f"**TFLite, batch 1, {tflite['num_threads']} threads** ({tflite.get('runtime')}; "
        "Keras: predict_on_batch, what users get by default, and a tf.function of "
        "`model(x, training=False)`). Speed-ups are Keras or fp32 TFLite latency / "
        "variant latency.",
        "",
        "| model | variant | size | latency | vs fp32 TFLite | vs Keras "
        "(predict_on_batch) | vs Keras (tf.function) | top-1 agreement with Keras "
        "| accuracy |",
        "|---|---|---:|---:|---|---|---|---:|---:|",
    ]
    for model, rec in tflite["models"].items():
        accuracy = _num(rec.get("keras_accuracy"))
        for call, key in (("predict_on_batch", "keras"), ("tf.function", "keras_tf_function")):
            latency = _num(rec[f"{key}_latency_ms"]["median"], "ms")
            lines.append(f"| {model} | Keras {call} | | {latency} | | | | | {accuracy} |")
        for variant, v in rec["variants"].items():
            lines.append(
                f"| {model} | {variant} | {v['size_bytes'] / 1e6:.2f} MB "
                f"| {_num(v['latency_ms']['median'], 'ms')} "
                f"| {_ratio_text(v['speedup_vs_fp32'])} | {_ratio_text(v['speedup_vs_keras'])} "
                f"| {_ratio_text(v['speedup_vs_keras_tf_function'])} "
                f"| {v['top1_agreement_with_keras']:.3f} | {_num(v.get('accuracy'))} |"
            )
    lines.append("")
    lines += [
        f"- {model}: weights {rec['weights']}; int8 calibration data: "
        f"{rec['representative_data']}; compared on {rec['eval_data']}."
        for model, rec in tflite["models"].items()
    ]
    return lines + _kernels_markdown(tflite)


def _kernels_markdown(tflite: dict[str, Any]) -> list[str]:
    kernels = {
        m: r["kernels_1_thread"] for m, r in tflite["models"].items() if "kernels_1_thread" in r
    }
    if not kernels:
        return []
    lines = [
        "",
        "**int8 against fp32 by kernel library**, one thread: `xnnpack` is LiteRT's "
        "default (the XNNPACK delegate), `builtin` LiteRT's own kernels "
        "(`BUILTIN_WITHOUT_DEFAULT_DELEGATES`).",
        "",
        "| model | kernels | fp32 | int8 | int8 speed-up |",
        "|---|---|---:|---:|---|",
    ]
    for model, rec in kernels.items():
        for name in ("xnnpack", "builtin"):
            k = rec[name]
            lines.append(
                f"| {model} | {name} | {_num(k['fp32_ms']['median'], 'ms')} "
                f"| {_num(k['int8_ms']['median'], 'ms')} "
                f"| {_ratio_text(k['int8_speedup_vs_fp32'])} |"
            )
    return lines


def _gpu_markdown(gpu: dict[str, Any]) -> list[str]:
    if not gpu.get("configs"):
        return []
    lines = [
        "",
        f"**GPU** ({', '.join(gpu['devices'])}; {gpu['model']}, batch {gpu['batch']}):",
        "",
        "| config | images/s | vs float32 |",
        "|---|---:|---|",
    ]
    for key, rec in gpu["configs"].items():
        lines.append(
            f"| {key} | {_num(rec['images_per_second'])} "
            f"| {_ratio_text(rec['speedup_vs_float32'])} |"
        )
    return lines


def detail_markdown(results: dict[str, Any], source: str) -> str:
    """Every figure, for benchmarks/README.md."""
    sections = results.get("sections", {})
    lines = [summary_markdown(results, source, every_ratio=True)]
    lines += _flops_markdown(sections)
    lines += _tflite_markdown(sections.get("tflite", {}))
    lines += _gpu_markdown(sections.get("gpu", {}))
    errors = [f"{name}: {s['error']}" for name, s in sections.items() if "error" in s]
    if errors:
        lines += ["", "Sections that failed: " + "; ".join(errors) + "."]
    return "\n".join(lines)


def summary_text(results: dict[str, Any]) -> str:
    """The ratios and targets as plain text, printed at the end of a benchmark run."""
    status = {t["name"]: t for t in targets(results)}
    width = max((len(r["name"]) for r in ratios(results)), default=10)
    lines = ["speed ratios keras_resnet / reference (above 1: keras_resnet faster)"]
    for r in ratios(results):
        target = status.get(r["name"])
        lines.append(
            f"  {r['name']:<{width}}  {r['ratio']:6.3f}{_ci(r['ci95'], '{:.3f}')}"
            f"  {_status(target)}"
        )
    imp = status.get("import keras_resnet - import keras (s)")
    if imp:
        lines.append(f"  import keras_resnet - import keras: {imp['value']:+.3f} s  {_status(imp)}")
    return "\n".join(lines)


# --- files --------------------------------------------------------------------------------


def latest_results(directory: Path) -> Path:
    """The newest full run that finished without a failed section (by its recorded date)."""
    candidates = []
    for path in directory.glob("*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if data.get("kind") == "full" and data.get("complete"):
            candidates.append((data["date"], path))
    if not candidates:
        raise FileNotFoundError(f"no full benchmark results in {directory}; run `make bench`")
    return max(candidates)[1]


def replace_block(text: str, block: str, content: str) -> str:
    """`text` with the lines between `block`'s start and end markers replaced by `content`."""
    start, end = f"<!-- bench:{block}:start -->", f"<!-- bench:{block}:end -->"
    head, sep, rest = text.partition(start)
    if not sep:
        return text
    _, sep_end, tail = rest.partition(end)
    if not sep_end:
        raise ValueError(f"{start} without {end}")
    return f"{head}{start}\n{content}\n{end}{tail}"


def render_readme(text: str, results: dict[str, Any], source: str) -> str:
    """The README text with every bench block it has regenerated."""
    makers = {"summary": summary_markdown, "detail": detail_markdown}
    for block in BLOCKS:
        text = replace_block(text, block, makers[block](results, source))
    return text


def plot(results: dict[str, Any], path: Path) -> None:
    """A horizontal bar chart of every ratio, with its interval and target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = ratios(results)
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(rows) + 1.6), dpi=80)
    y = list(range(len(rows)))[::-1]
    values = [r["ratio"] for r in rows]
    errors = [
        [r["ratio"] - r["ci95"][0] if r["ci95"] else 0 for r in rows],
        [r["ci95"][1] - r["ratio"] if r["ci95"] else 0 for r in rows],
    ]
    colours = [
        "tab:gray"
        if r["target"] is None
        else "tab:green"
        if timing.within_noise_at_least(r, r["target"])
        else "tab:red"
        for r in rows
    ]
    # Bars grow from 1.00 (parity), left when keras_resnet is slower, right when faster.
    ax.barh(y, [v - 1.0 for v in values], left=1.0, color=colours)
    ax.errorbar(values, y, xerr=errors, fmt="none", ecolor="black", capsize=2, lw=0.8)
    for yi, r in zip(y, rows, strict=True):
        if r["target"] is not None:
            ax.plot([r["target"]] * 2, [yi - 0.4, yi + 0.4], color="black", lw=1.5)
    ax.axvline(1.0, color="black", lw=0.6, ls="--")
    ax.set_yticks(y, [r["name"] for r in rows], fontsize=8)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("keras_resnet / reference speed (log; green met, red missed, bar = target)")
    ax.set_title(
        f"keras_resnet benchmark ({results.get('kind')}), {results['machine']['cpu']['model']}, "
        f"{results['date'][:10]}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS_DIR,
        help="a results file, or a directory to take the newest full run from",
    )
    parser.add_argument("--readme", type=Path, nargs="+", default=list(READMES))
    parser.add_argument("--chart", type=Path, help="PNG path (default: beside the results)")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a README is out of date"
    )
    args = parser.parse_args(argv)

    path = latest_results(args.results) if args.results.is_dir() else args.results
    results = json.loads(path.read_text())
    try:
        source = path.resolve().relative_to(BENCH_DIR.parent).as_posix()
    except ValueError:
        source = path.name
    stale = []
    for readme in args.readme:
        text = readme.read_text()
        new = render_readme(text, results, source)
        if new != text:
            stale.append(readme)
            if not args.check:
                readme.write_text(new)
    if args.check:
        for readme in stale:
            print(f"{readme} is not what {path} generates; run python -m benchmarks.report")
        return 1 if stale else 0
    chart = args.chart or path.with_suffix(".png")
    plot(results, chart)
    print(f"{path} -> {', '.join(map(str, args.readme))}, {chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
