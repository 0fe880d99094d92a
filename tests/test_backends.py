"""Keras backends other than TensorFlow: weights, forward, fold, predict and fit under JAX.

TensorFlow (this process) writes a tiny model's weights and input; one subprocess under
KERAS_BACKEND=jax (tests/backends/jax_run.py) loads them, and its outputs must equal
TensorFlow's. Skipped only when JAX is not installed (`pip install -e ".[jax]"`; the dev
extra includes it).
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import random_weights, tiny_spec

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_under_jax_models_weights_fit_fold_and_predict_work_and_tf_only_parts_say_so(tmp_path):
    import keras_resnet

    x = np.random.default_rng(0).uniform(size=(8, 16, 16, 3)).astype("float32")
    model = keras_resnet.build_resnet(tiny_spec(), input_shape=(16, 16, 3), classes=4)
    random_weights(model, seed=1, scale=0.5)
    model.save_weights(tmp_path / "tiny.weights.h5")
    np.save(tmp_path / "input.npy", x)
    expected = model.predict(x, verbose=0)

    # XLA's fastest compiles: JAX compiles each initializer and step, and on 2 cores the
    # optimised compiles were half of this test's time (27.7 s of CPU against 13.4 s).
    flags = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags}
    done = subprocess.run(
        [sys.executable, "-m", "tests.backends.jax_run", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["backend"] == "jax"
    np.testing.assert_allclose(out["logits"], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["folded"], expected, rtol=1e-4, atol=1e-5)
    assert out["folded_bn_layers"] == 0
    predicted, scores = out["predict"]
    assert predicted == int(np.argmax(scores))
    assert len(out["fit_losses"]) == 2 and all(np.isfinite(out["fit_losses"]))
    assert out["fit_changed"] >= out["weights"] // 2  # kernels and BN parameters moved
    for message, what in zip(out["refusals"], ("load_dataset()", "export_model()"), strict=True):
        assert message.startswith(f"{what} needs Keras' TensorFlow backend"), message
        assert message.endswith("Received: KERAS_BACKEND='jax'") and "\n" not in message
