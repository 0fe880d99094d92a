"""The ImageNet weights cache deletes nothing it did not write (all offline: file:// URLs).

`keras.utils.get_file` downloads over a cached file that fails its hash check
and deletes it when that download fails; `weights.imagenet_weights_path` first
sets such a file aside as `<name>.bad-<md5>`, and removes only a file this call
downloaded.
"""

import hashlib

import pytest

from keras_resnet import weights
from keras_resnet.spec import get_spec

FILE = weights.weights_file_name("resnet50", include_top=False)
PUBLISHED = b"the published weights file"
BY_HAND = b"a copy made by hand, not the published file"


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty Keras cache's models/ folder; resnet50's notop hash is PUBLISHED's."""
    monkeypatch.setattr(weights, "CACHE_DIR", str(tmp_path / "keras_home"))
    monkeypatch.setitem(weights.WEIGHTS_HASHES, "resnet50", ("0" * 32, _md5(PUBLISHED)))
    models = tmp_path / "keras_home" / "models"
    models.mkdir(parents=True)
    return models


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    """A local folder standing in for the weights bucket (get_file reads file:// URLs)."""
    root = tmp_path / "bucket"
    root.mkdir()
    monkeypatch.setattr(weights, "BASE_WEIGHTS_PATH", root.as_uri() + "/")
    return root


def _fetch() -> str:
    return weights.imagenet_weights_path(get_spec("resnet50"), include_top=False)


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_good_cached_file_is_used_as_it_is(cache, bucket):
    (cache / FILE).write_bytes(PUBLISHED)  # the bucket is empty: nothing can be downloaded
    assert _fetch() == str(cache / FILE)
    assert _names(cache) == [FILE]


def test_a_cached_file_that_fails_its_hash_is_kept_aside_and_the_download_replaces_it(
    cache, bucket
):
    (bucket / FILE).write_bytes(PUBLISHED)
    (cache / FILE).write_bytes(BY_HAND)
    with pytest.warns(UserWarning, match=f"kept as .*{FILE}.bad-{_md5(BY_HAND)}"):
        assert _fetch() == str(cache / FILE)
    assert (cache / FILE).read_bytes() == PUBLISHED
    assert (cache / f"{FILE}.bad-{_md5(BY_HAND)}").read_bytes() == BY_HAND


def test_a_download_that_fails_its_hash_is_removed_and_nothing_else(cache, bucket):
    (bucket / FILE).write_bytes(b"corrupted on the way")
    (cache / "other_weights.h5").write_bytes(b"not ours")
    with pytest.raises(ValueError, match=f"{FILE} downloaded from .*; the file was removed"):
        _fetch()
    assert _names(cache) == ["other_weights.h5"]


def test_a_bad_cached_file_and_a_bad_download_keep_the_cached_one(cache, bucket):
    (bucket / FILE).write_bytes(b"corrupted on the way")
    (cache / FILE).write_bytes(BY_HAND)
    with pytest.raises(ValueError, match="the file was removed"), pytest.warns(UserWarning):
        _fetch()
    assert _names(cache) == [f"{FILE}.bad-{_md5(BY_HAND)}"]


def test_offline_a_bad_cached_file_is_kept_and_named(cache, bucket):
    """get_file deletes its target when a download fails: the hand-made copy is not there."""
    (cache / FILE).write_bytes(BY_HAND)  # the bucket is empty: the download fails
    kept = cache / f"{FILE}.bad-{_md5(BY_HAND)}"
    with pytest.raises(OSError, match=f"kept as {kept}"), pytest.warns(UserWarning):
        _fetch()
    assert _names(cache) == [kept.name] and kept.read_bytes() == BY_HAND
