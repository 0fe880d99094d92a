"""The README runs as written, and its models table and docs/models.md are the registry's.

Every ```python block of README.md is executed, in order, in one namespace, in a temporary
directory, with the offline Hub cache of conftest.py (`offline_hub`: the seeded
timm/resnet18d.ra2_in1k, HF_HUB_OFFLINE=1) and ImageNet's class names stubbed, so nothing
is downloaded. The `make demo` / `make test` lines must stay true: they are checked against
the Makefile.
"""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.torch_state import reference_state

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")

pytestmark = pytest.mark.xdist_group("offline_hub")


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)


def test_the_readme_is_short_and_keeps_the_two_commands():
    assert len(README.splitlines()) <= 250
    makefile = (REPO / "Makefile").read_text()
    for target in ("demo", "test"):
        assert f"make {target}" in README
        assert re.search(rf"^{target}:", makefile, flags=re.M)
    for link in re.findall(r"\]\(((?:docs|benchmarks|notebooks|saved_models)/[^)#]+)", README):
        assert (REPO / link).exists(), link


def test_every_python_block_of_the_readme_runs(offline_hub, tmp_path, monkeypatch, capsys):
    from keras.src.applications import imagenet_utils

    index = {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}
    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX", index)
    monkeypatch.chdir(tmp_path)
    blocks = _python_blocks(README)
    assert len(blocks) == 3
    namespace: dict = {}

    def run(i):
        exec(compile(blocks[i], f"README.md python block {i + 1}", "exec"), namespace)
        return capsys.readouterr().out.splitlines()

    # Block 1: the models it lists, then the top-3 classes of the seeded weights, named.
    listed, top3 = run(0)
    assert eval(listed)[0] == "resnet18d.ra2_in1k" and len(eval(listed)) == 5
    assert top3.startswith("[[('n0") and top3.count("class_") == 3
    # Block 2: the counts it states, and the model it builds.
    stated, custom = run(1)
    assert stated == "25636712"
    assert int(custom) == namespace["model"].count_params()
    # Block 3: the pretrained backbone, frozen, under a trained 10-class head; the TFLite file.
    evaluated, path = run(2)
    model = namespace["model"]
    assert model.output_shape == (None, 10)
    assert np.isfinite(eval(evaluated)[0]) and 0.0 <= eval(evaluated)[1] <= 1.0
    fixture = offline_hub["fixture"]
    state = reference_state(fixture["keys_shapes_dtypes"], fixture["state_seed"])
    for layer, key in (
        ("conv1_1_conv", "conv1.0.weight"),
        ("conv5_block2_2_conv", "layer4.1.conv2.weight"),
    ):
        np.testing.assert_array_equal(
            model.get_layer(layer).kernel, state[key].transpose(2, 3, 1, 0)
        )
    assert (tmp_path / "saved_models/digits-resnet18d" / path).stat().st_size > 1_000_000


def test_the_models_table_and_docs_models_md_are_generated_from_the_registry():
    out = subprocess.run(
        [sys.executable, "-m", "keras_resnet.models_doc", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    from keras_resnet.registry import PRETRAINED

    models_md = (REPO / "docs" / "models.md").read_text()
    assert all(f"| `{name}` |" in models_md for name in PRETRAINED)
