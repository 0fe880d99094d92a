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
