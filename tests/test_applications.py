"""keras.applications drop-in: signatures, graphs, parameter counts, weights, errors."""

import hashlib
import http.server
import inspect
import os
import threading

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format

import keras_resnet
from keras_resnet import weights as weights_module
from keras_resnet.applications import APPLICATIONS
from tests.helpers import random_weights

KERAS_MODELS = {
    "ResNet50": (keras.applications.ResNet50, 25_636_712, 23_587_712),
    "ResNet101": (keras.applications.ResNet101, 44_707_176, 42_658_176),
    "ResNet152": (keras.applications.ResNet152, 60_419_944, 58_370_944),
    "ResNet50V2": (keras.applications.ResNet50V2, 25_613_800, 23_564_800),
    "ResNet101V2": (keras.applications.ResNet101V2, 44_675_560, 42_626_560),
    "ResNet152V2": (keras.applications.ResNet152V2, 60_380_648, 58_331_648),
}

# name -> (count_params with the default head, trainable)
OWN_COUNTS = {
    "ResNet18": (11_699_112, 11_689_512),
    "ResNet34": (21_814_696, 21_797_672),
    "ResNet20": (271_098, 269_722),
    "ResNet110": (1_736_058, 1_727_962),
}


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_public_api_lists_every_application():
    public = [
        n for n in keras_resnet.__all__ if n[0].isupper() and n.endswith(tuple("0123456789D"))
    ]
    assert sorted(APPLICATIONS) == sorted(public)
    assert len(APPLICATIONS) == 27
    for name in APPLICATIONS:
        assert getattr(keras_resnet, name) is APPLICATIONS[name]


@pytest.mark.parametrize("name", list(KERAS_MODELS))
def test_same_signature_as_keras(name):
    ours = inspect.signature(APPLICATIONS[name]).parameters
    theirs = inspect.signature(KERAS_MODELS[name][0]).parameters
    assert [(p.name, p.default, p.kind) for p in ours.values()] == [
        (p.name, p.default, p.kind) for p in theirs.values()
    ]


# ResNet101 and ResNet101V2 differ from the 50 and 152 of their version in block counts only.
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.exhaustive if "101" in name else ())
        for name in KERAS_MODELS
    ],
)
def test_same_graph_as_keras(name, fresh_session):
    reference, with_top, notop = KERAS_MODELS[name]
    theirs = reference(weights=None)
    their_layers = [(la.name, type(la).__name__) for la in theirs.layers]
    their_shapes = [tuple(w.shape) for w in theirs.weights]
    their_config = [la.get_config() for la in theirs.layers]
    del theirs
    keras.backend.clear_session()  # same auto-generated names on both sides
    ours = APPLICATIONS[name](weights=None)
    assert [(la.name, type(la).__name__) for la in ours.layers] == their_layers
    assert [tuple(w.shape) for w in ours.weights] == their_shapes
    assert [la.get_config() for la in ours.layers] == their_config
    assert ours.count_params() == with_top
    assert APPLICATIONS[name](weights=None, include_top=False).count_params() == notop


@pytest.mark.parametrize("name", list(OWN_COUNTS))
def test_own_parameter_counts(name):
    model = APPLICATIONS[name](weights=None)
    assert (model.count_params(), _trainable(model)) == OWN_COUNTS[name]


def test_cifar_defaults():
    model = keras_resnet.ResNet56()
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 10)
    assert model.name == "resnet56"


def test_docstrings_state_true_parameter_counts():
    for name, fn in APPLICATIONS.items():
        if name in OWN_COUNTS:
            assert f"\n{OWN_COUNTS[name][0]}\n" in fn.__doc__
        if name in KERAS_MODELS:
            assert f"\n{KERAS_MODELS[name][1]}\n" in fn.__doc__


def _save_legacy_h5(model, path):
    """Writes weights the way keras.applications' published .h5 files are laid out."""
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


# ResNet50 (v1, with top) and ResNet50V2 (headless) cover both loaders and both heads;
# ResNet101/152(V2) differ only in block counts, and test_same_graph_as_keras holds their
# layers, names and weight shapes equal to keras.applications' (loading them too cost
# ~60 s of CPU and checked nothing more).
@pytest.mark.parametrize("name, include_top", [("ResNet50", True), ("ResNet50V2", False)])
def test_keras_weight_files_load_one_to_one(name, include_top, tmp_path):
    reference = KERAS_MODELS[name][0]
    kwargs = dict(weights=None, include_top=include_top)
    if not include_top:
        kwargs.update(input_shape=(64, 64, 3), pooling="avg")
    theirs = reference(**kwargs)
    random_weights(theirs, seed=1, scale=0.1)
    path = str(tmp_path / "weights.h5")
    _save_legacy_h5(theirs, path)
    size = 224 if include_top else 64
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    expected = theirs.predict_on_batch(x)
    ours = APPLICATIONS[name](**{**kwargs, "weights": path})
    np.testing.assert_allclose(ours.predict_on_batch(x), expected, atol=1e-5, rtol=1e-5)


class _Server:
    """Serves files from a folder on 127.0.0.1 (stands in for the weights bucket)."""

    def __init__(self, root):
        handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(  # noqa: E731
            *a, directory=str(root), **k
        )
        http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _md5(path):
    return hashlib.md5(open(path, "rb").read()).hexdigest()


@pytest.mark.slow
def test_imagenet_weights_download_cache_and_hash_check(tmp_path, monkeypatch):
    """weights='imagenet' through keras.utils.get_file, served from 127.0.0.1."""
    from keras.src.applications import resnet as keras_resnet_module
    from keras.src.backend import config as keras_config

    served = tmp_path / "bucket"
    served.mkdir()
    cache = tmp_path / "keras_home"
    cache.mkdir()
    file_name = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert weights_module.weights_file_name("resnet50", include_top=False) == file_name
    theirs = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    random_weights(theirs, seed=2, scale=0.1)
    _save_legacy_h5(theirs, served / file_name)
    bad_name = "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5"
    (served / bad_name).write_bytes(b"not the published file")

    server = _Server(served)
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(cache))  # Keras' own cache location
    monkeypatch.setattr(weights_module, "BASE_WEIGHTS_PATH", server.url)
    monkeypatch.setitem(
        weights_module.WEIGHTS_HASHES, "resnet50", ("0" * 32, _md5(served / file_name))
    )
    try:
        ours = keras_resnet.ResNet50(weights="imagenet", include_top=False, input_shape=(64, 64, 3))
        for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
        cached = cache / "models" / file_name
        assert cached.exists()

        # A corrupted or substituted file: clear error naming the file, nothing left behind.
        with pytest.raises(ValueError, match=f"{bad_name} downloaded from {server.url}"):
            keras_resnet.ResNet50V2(weights="imagenet", include_top=False)
        assert not (cache / "models" / bad_name).exists()
    finally:
        server.stop()

    # Offline: the cached file is used, by us and by keras.applications itself.
    again = keras_resnet.ResNet50(weights="imagenet", include_top=False, input_shape=(64, 64, 3))
    np.testing.assert_array_equal(again.get_weights()[0], theirs.get_weights()[0])
    monkeypatch.setattr(keras_resnet_module, "BASE_WEIGHTS_PATH", server.url)
    monkeypatch.setitem(keras_resnet_module.WEIGHTS_HASHES, "resnet50", ("0" * 32, _md5(cached)))
    reused = keras.applications.ResNet50(
        weights="imagenet", include_top=False, input_shape=(64, 64, 3)
    )
    np.testing.assert_array_equal(reused.get_weights()[0], theirs.get_weights()[0])

    # Offline with nothing cached: an OSError that names the file and what to do.
    with pytest.raises(OSError, match="resnet101_weights_tf_dim_ordering_tf_kernels.h5"):
        keras_resnet.ResNet101(weights="imagenet")
    assert not os.path.exists(cache / "models" / "resnet101_weights_tf_dim_ordering_tf_kernels.h5")


def test_published_hashes_are_keras_applications_own():
    from keras.src.applications import resnet as keras_resnet_module

    assert weights_module.BASE_WEIGHTS_PATH == keras_resnet_module.BASE_WEIGHTS_PATH
    for name, hashes in weights_module.WEIGHTS_HASHES.items():
        assert keras_resnet_module.WEIGHTS_HASHES[name] == hashes


@pytest.mark.parametrize("name", ["ResNet18", "ResNet34V2", "ResNet20", "ResNet110"])
def test_no_published_weights_is_a_value_error(name):
    with pytest.raises(ValueError, match="No published ImageNet weights"):
        APPLICATIONS[name](weights="imagenet")


# Bad calls keras.applications.ResNet50 rejects with a ValueError; ours must too.
KERAS_ERRORS = [
    dict(weights="no/such/file.h5"),
    dict(weights="imagenet", classes=10),
    dict(weights="imagenet", include_top=False, input_shape=(64, 64, 1)),
    dict(weights="imagenet", include_top=False, input_shape=(16, 16, 3)),
    dict(weights="imagenet", include_top=True, input_shape=(200, 200, 3)),
    dict(weights=None, input_shape=(64, 64)),
    dict(weights=None, input_shape=(None, None, 3), include_top=True),
    dict(weights=None, include_top=False, input_shape=(31, 64, 3)),
    dict(weights="imagenet", classifier_activation="relu"),
]


@pytest.mark.parametrize("kwargs", KERAS_ERRORS)
def test_same_errors_as_keras(kwargs):
    with pytest.raises(ValueError):
        keras.applications.ResNet50(**kwargs)
    with pytest.raises(ValueError):
        keras_resnet.ResNet50(**kwargs)


def test_bad_pooling_is_an_error_unlike_keras():
    # keras.applications silently ignores an unknown pooling; we name it.
    with pytest.raises(ValueError, match="Received: pooling='mean'"):
        keras_resnet.ResNet18(include_top=False, pooling="mean")


def test_preprocess_input_matches_keras():
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(
        keras_resnet.preprocess_input(x.copy()),
        keras.applications.resnet.preprocess_input(x.copy()),
    )
    np.testing.assert_allclose(
        keras_resnet.preprocess_input_v2(x.copy()),
        keras.applications.resnet_v2.preprocess_input(x.copy()),
    )
    assert keras_resnet.preprocess_input_v2(np.array([0.0, 255.0])).tolist() == [-1.0, 1.0]


def test_decode_predictions_uses_keras_class_index(monkeypatch):
    from keras.src.applications import imagenet_utils

    index = {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}
    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX", index)
    preds = np.zeros((1, 1000), "float32")
    preds[0, [7, 3]] = [0.9, 0.1]
    top = keras_resnet.decode_predictions(preds, top=2)
    assert [(c, n) for c, n, _ in top[0]] == [("n00000007", "class_7"), ("n00000003", "class_3")]
    with pytest.raises(ValueError):
        keras_resnet.decode_predictions(np.zeros((1, 10)))
