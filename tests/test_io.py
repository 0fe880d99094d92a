"""keras_resnet._io: atomic writes, strict JSON and run-directory locks, on real files."""

import json
import math
import subprocess
import sys

import pytest

from keras_resnet._io import (
    LOCK_FILE,
    DirectoryLock,
    DirectoryLockedError,
    atomic_path,
    read_json_object,
    write_json,
)


def test_write_json_is_strict_json(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": {"d": math.nan}})

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    assert json.loads(path.read_text(), parse_constant=refuse) == {
        "a": None,
        "b": [None, None, 1.5],
        "c": {"d": None},
    }


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "best.keras"
    path.write_bytes(b"the good one")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_bytes(b"half of a new one")
        raise RuntimeError("killed mid-write")
    assert path.read_bytes() == b"the good one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.keras"]


@pytest.mark.parametrize("text, says", [("[]", "JSON list"), ("{", "JSONDecodeError")])
def test_read_json_object_names_the_argument(tmp_path, text, says):
    (tmp_path / "run.json").write_text(text)
    with pytest.raises(ValueError, match=f"{says}.*Received: output_dir="):
        read_json_object(tmp_path / "run.json", "a run.json", "output_dir")


def test_a_live_holder_is_named_and_a_dead_one_is_taken_over(tmp_path):
    refused = pytest.raises(DirectoryLockedError, match=r"in use by another process \(pid \d+")
    with DirectoryLock(tmp_path, arg="output_dir") as first, refused:
        DirectoryLock(tmp_path, arg="output_dir").acquire()
    assert first._fd is None

    # A holder killed without releasing: its pid is left in the file, its flock is gone.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(DirectoryLockedError, match=f"pid {holder.pid} "):
        DirectoryLock(tmp_path, arg="output_dir").acquire()
    holder.kill()
    holder.wait()
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == holder.pid
    with DirectoryLock(tmp_path, arg="output_dir") as taken:
        assert taken.stale["pid"] == holder.pid


HOLD = """
import sys, time
from keras_resnet._io import DirectoryLock
lock = DirectoryLock(sys.argv[1], arg="output_dir").acquire()
print("locked", flush=True)
time.sleep(600)
"""


def test_remove_temp_files_takes_only_the_names_temp_path_for_makes(tmp_path):
    from keras_resnet._io import remove_temp_files, temp_path_for

    ours = [temp_path_for(tmp_path / name) for name in ("best.keras", "latest.weights.h5")]
    for path in ours:
        path.write_text("cut short")
    theirs = tmp_path / ".best.keras.notes"
    theirs.write_text("not ours")
    assert remove_temp_files(tmp_path / "best.keras") == [ours[0].name]
    assert remove_temp_files(tmp_path / "latest.weights.h5") == [ours[1].name]
    assert sorted(p.name for p in tmp_path.iterdir()) == [theirs.name]
