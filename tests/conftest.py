"""Shared fixtures. Test helpers live in tests/helpers.py."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

# No TensorFlow here: under xdist the controlling process loads this file too, before it
# starts the workers, and importing Keras there would delay them by ~5 s.

# The slowest files first (measured: each takes minutes, or holds a test of about a
# minute), so that with two workers (`-n 2 --dist loadgroup`) no long test starts last and
# leaves one core idle (the ported ResNet18's export, last in the run, did so: ~58 s).
SLOWEST_FIRST = (
    "test_multiworker.py",
    "test_tuning.py",
    "test_notebooks.py",
    "test_bench.py",
    "test_torch_weights.py",
    "test_export.py",
    "test_backends.py",  # a JAX subprocess: 25-55 s
    "test_readme.py",  # with test_registry.py, one xdist group (the offline Hub cache)
    "test_training.py",
    "test_interrupts.py",
    "test_applications.py",
    "test_property.py",
    "test_precision.py",
)


def pytest_collection_modifyitems(config, items) -> None:
    def rank(item) -> int:
        name = item.path.name
        return SLOWEST_FIRST.index(name) if name in SLOWEST_FIRST else len(SLOWEST_FIRST)

    items.sort(key=rank)  # stable: each file keeps its own order


@pytest.fixture
def fresh_session():
    """Resets Keras' name counters, for tests that compare auto-generated layer names.

    Not autouse: clear_session() costs ~0.2 s (a full gc) per call.
    """
    import keras

    keras.backend.clear_session()
    yield


def pytest_terminal_summary(terminalreporter) -> None:
    """Each notebook's small-mode run time, from the reports (xdist workers send them too)."""
    seconds = {}
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            for key, value in getattr(report, "user_properties", ()):
                if key == "notebook_seconds":
                    seconds[value[0]] = value[1]
    if not seconds:
        return
    terminalreporter.section("notebook run times (small mode)")
    for name, value in sorted(seconds.items()):
        terminalreporter.write_line(f"{value:7.1f} s  {name}")
    terminalreporter.write_line(f"{sum(seconds.values()):7.1f} s  total")


def lay_out_hub_cache(cache: os.PathLike, repo_id: str, state: dict) -> str:
    """Writes `state` as `repo_id`'s model.safetensors in huggingface_hub's cache layout.

    models--OWNER--NAME/blobs/<sha256>, snapshots/<revision>/model.safetensors (a symlink to
    the blob) and refs/main (the revision): what `hf download` leaves. Returns the sha256.
    """
    import hashlib
    from pathlib import Path

    from safetensors.numpy import save_file

    repo = Path(cache) / f"models--{repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True)
    staged = repo / "blobs" / "staged"
    save_file(state, str(staged))
    sha256 = hashlib.sha256(staged.read_bytes()).hexdigest()
    staged.rename(repo / "blobs" / sha256)
    revision = hashlib.sha1(repo_id.encode()).hexdigest()  # any 40-hex commit id
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(f"../../blobs/{sha256}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return sha256


@pytest.fixture(scope="session")
def _hub_and_keras_caches(tmp_path_factory):
    """The caches `offline_hub` points at, made once per worker: a converted file is reused."""
    from tests.fixtures.torch_state import fixture_path, load_fixture, reference_state

    root = tmp_path_factory.mktemp("hub")
    fixture = load_fixture(fixture_path("timm", "resnet18d"))
    state = reference_state(fixture["keys_shapes_dtypes"], fixture["state_seed"])
    sha256 = lay_out_hub_cache(root / "hf", "timm/resnet18d.ra2_in1k", state)
    (root / "keras").mkdir()  # else Keras' cache falls back to /tmp/.keras
    return {"root": root, "fixture": fixture, "sha256": sha256, "keras": root / "keras"}


@pytest.fixture(scope="module")
def offline_hub(_hub_and_keras_caches):
    """An offline Hugging Face cache holding timm/resnet18d.ra2_in1k, and a Keras cache.

    The weights are tests/fixtures' seeded timm resnet18d state (its logits are the real
    timm's on the fixture's input). HF_HUB_CACHE and HF_HUB_OFFLINE=1 are set, and also
    patched into huggingface_hub.constants, which reads them once at import;
    keras_resnet.weights.CACHE_DIR points Keras' cache into the test's directory.
    """
    import huggingface_hub.constants

    import keras_resnet.weights

    caches = _hub_and_keras_caches
    hf = str(caches["root"] / "hf")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_CACHE", hf)
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(huggingface_hub.constants, "HF_HUB_CACHE", hf)
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        mp.setattr(keras_resnet.weights, "CACHE_DIR", str(caches["keras"]))
        yield caches
