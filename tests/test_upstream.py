"""The private upstream names listed in docs/upstream.md: a release that moves one fails here.

keras-tuner's are checked in tests/test_tuning.py (test_the_keras_tuner_internals_...).
"""

import importlib

import pytest

PRIVATE = [
    ("keras.src.applications.imagenet_utils", "obtain_input_shape"),
    ("keras.src.applications.imagenet_utils", "validate_activation"),
    ("keras.src.backend.config", "keras_home"),
    ("tensorflow_datasets.core.utils.gcs_utils", "_is_gcs_disabled"),
]


@pytest.mark.parametrize("module, name", PRIVATE, ids=lambda v: v)
def test_private_names_we_use_still_exist(module, name):
    assert hasattr(importlib.import_module(module), name), f"{module}.{name} moved upstream"


def test_the_listed_names_are_the_ones_the_code_uses():
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "upstream.md").read_text()
    for module, name in PRIVATE:
        assert f"{module}.{name}" in doc.replace("`", ""), f"{module}.{name} not in the doc"
    code = "\n".join(
        p.read_text() for p in (Path(__file__).parents[1] / "keras_resnet").rglob("*.py")
    )
    for module, _ in PRIVATE:
        assert module in code or module.rsplit(".", 1)[0] in code, module


def test_keras_leaves_xla_off_when_only_a_cpu_trains():
    """train() compiles with Keras' jit_compile="auto": XLA off on a CPU-only host, which
    docs/performance.md measured faster there (train step 0.41x with XLA). A Keras that
    turns it on for CPUs changes our measured default: this fails first."""
    import keras
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible: Keras' auto turns XLA on, as measured wanted there")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    assert model.jit_compile is False


@pytest.mark.xdist_group("upstream")
def test_xdist_loadgroup_keeps_a_group_on_one_worker(request):
    """`make test` runs `-n 2 --dist loadgroup`: a module with expensive module fixtures (the
    two-worker job, the trained export run) marks itself as one xdist_group so the fixtures
    are built once. pytest 9.2's structured node ids made pytest-xdist 3.8 drop the group,
    silently (pytest-dev/pytest-xdist#1386): every such fixture was built on both workers
    (the job's second copy alone took ~145 s of CPU, measured per test). setup.py keeps
    pytest below 9.2; a release that breaks the grouping again fails here."""
    if not request.config.getvalue("loadgroup"):
        pytest.skip("runs only under --dist loadgroup (make test's own options)")
    assert request.node.nodeid.endswith("@upstream"), request.node.nodeid
