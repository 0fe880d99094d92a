"""Shared fixtures. Test helpers live in tests/helpers.py."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def fresh_session():
    """Resets Keras' name counters, for tests that compare auto-generated layer names.

    Not autouse: clear_session() costs ~0.2 s (a full gc) per call.
    """
    keras.backend.clear_session()
    yield
