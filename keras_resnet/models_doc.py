"""docs/models.md and the README's models table, generated from the registry.

    python -m keras_resnet.models_doc            # rewrite both
    python -m keras_resnet.models_doc --check    # exit 1 if either is not what it generates

The README's table sits between `<!-- models:start -->` and `<!-- models:end -->`;
tests/test_readme.py fails while either file is stale. No Keras import: parameter counts
come from the specs (`ResNetSpec.count_params`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from keras_resnet.catalog import application_name
from keras_resnet.registry import PRETRAINED
from keras_resnet.spec import get_spec, list_specs

ROOT = Path(__file__).resolve().parent.parent
MODELS_MD = ROOT / "docs" / "models.md"
README = ROOT / "README.md"
START, END = "<!-- models:start -->", "<!-- models:end -->"


def _params(spec_name: str) -> str:
    spec = get_spec(spec_name)
    return f"{spec.count_params(classes=10 if spec.stem == 'cifar' else 1000) / 1e6:.1f}M"


def _source(source: str) -> str:
    if source.startswith("hf-hub:"):
        repo = source.removeprefix("hf-hub:")
        return f"[{repo}](https://huggingface.co/{repo})"
    return source


def models_markdown() -> str:
    lines = [
        "# Models",
        "",
        "Generated from `keras_resnet/registry.py` by `python -m keras_resnet.models_doc`; do "
        "not edit. `create_model(NAME, pretrained=True)` loads a row's weights; the top-1 is "
        "its publisher's (timm's results-imagenet.csv, keras.io's applications table) at the "
        "input size and crop given, with the interpolation named. Preprocessing: "
        "`preprocess_input(x, mode=...)` on RGB 0-255 pixels. How the weights are fetched "
        "and converted: [weights.md](weights.md).",
        "",
        "## Pretrained",
        "",
        "| name | graph | application | params | top-1 | input | crop | interpolation "
        "| preprocessing | weights |",
        "|---|---|---|---:|---:|---:|---:|---|---|---|",
    ]
    for name, cfg in PRETRAINED.items():
        app = application_name(cfg.spec) or "-"
        lines.append(
            f"| `{name}` | `{cfg.spec}` | {app} | {_params(cfg.spec)} | {cfg.top1:.2f} "
            f"| {cfg.input_size} | {cfg.crop_pct:.3f} | {cfg.interpolation} "
            f"| {cfg.preprocessing} | {_source(cfg.source)} |"
        )
    lines += [
        "",
        "## Every graph",
        "",
        "`create_model(NAME)` (random weights) or `build_resnet(NAME)`; the family's fields "
        "are in [api.md](api.md).",
        "",
        "| name | application | params | pretrained tags |",
        "|---|---|---:|---|",
    ]
    for spec in list_specs():
        tags = ", ".join(f"`{c.tag}`" for c in PRETRAINED.values() if c.spec == spec) or "-"
        lines.append(f"| `{spec}` | {application_name(spec) or '-'} | {_params(spec)} | {tags} |")
    return "\n".join(lines) + "\n"


def readme_table() -> str:
    """One row per model name with weights: its tags, and the best one's top-1."""
    rows = ["| model | params | pretrained tags | best ImageNet top-1 |", "|---|---:|---|---|"]
    by_name: dict[str, list] = {}
    for cfg in PRETRAINED.values():
        by_name.setdefault(cfg.name, []).append(cfg)
    for name, cfgs in by_name.items():
        best = max(cfgs, key=lambda c: c.top1)
        tags = ", ".join(c.tag for c in cfgs)
        rows.append(
            f"| `{name}` | {_params(best.spec)} | {tags} | {best.top1:.1f}% (`{best.tag}`) |"
        )
    return "\n".join(rows)


def render_readme(text: str) -> str:
    head, sep, rest = text.partition(START)
    if not sep:
        raise ValueError(f"README.md has no {START} marker")
    _, sep_end, tail = rest.partition(END)
    if not sep_end:
        raise ValueError(f"{START} without {END}")
    return f"{head}{START}\n{readme_table()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m keras_resnet.models_doc")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    from keras_resnet._io import write_text_atomic

    if not (ROOT / "setup.py").is_file():  # an installed package: no README or docs/ to write
        parser.error(f"run it in a source checkout (no setup.py beside {ROOT / 'keras_resnet'})")

    stale = []
    for path, new in (
        (MODELS_MD, models_markdown()),
        (README, render_readme(README.read_text(encoding="utf-8"))),
    ):
        if not path.exists() or path.read_text(encoding="utf-8") != new:
            stale.append(path)
            if not args.check:
                write_text_atomic(path, new)
    for path in stale if args.check else ():
        print(f"{path} is stale: run python -m keras_resnet.models_doc")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
