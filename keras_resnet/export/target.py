"""The output directory: which one an export may create or replace, and writing it atomically.

An export is written into `.NAME.partial-PID` next to its target, synced, sealed
with its manifest.json last, and renamed into place; an export it replaces is
renamed to `.NAME.old-PID` first and removed only after that. What a killed
export leaves is settled by the next one, which never loses a complete copy.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tensorflow as tf

from keras_resnet._io import _fsync_dir, write_json, write_text_atomic
from keras_resnet._limits import check_json_file

MANIFEST, LABELS = "manifest.json", "labels.txt"
# In every manifest: what `overwrite` checks before it replaces a directory.
PRODUCER = "keras_resnet.export"
# In every partial directory from its creation until its manifest is written: what proves
# an unfinished one is ours, so the cleanup of a killed export may remove it.
PARTIAL_MARKER = ".keras_resnet-export-partial"


def write_atomically(
    target: Path,
    output_dir: Any,
    overwrite: bool,
    fill: Callable[[Path], dict[str, Any]],
    class_names: list[str],
) -> dict[str, Any]:
    """Writes an export to `target` (checked by `check_output_dir`) all at once, or not at all.

    `fill(tmp)` writes the artifacts into the temporary directory `tmp` and
    returns the manifest; labels.txt and the manifest are added, then `tmp`
    replaces `target`. On any error what was created is removed; a failed write
    (a full disk, no permission) becomes one ValueError naming `output_dir`.
    """
    tmp, created = _temp_dir(target, "partial"), []
    try:
        _make_dirs(tmp, created)
        manifest = fill(tmp)
        _seal(tmp, manifest, class_names)
        _replace_dir(tmp, target, overwrite, output_dir)
    except BaseException as e:
        _undo(created, tmp)
        reason = _failed_write(e, tmp)
        if reason is None:
            raise
        raise _write_error(reason, output_dir) from None
    return manifest


def _make_dirs(tmp: Path, created: list[Path]) -> None:
    """Creates the missing parents of `tmp`, then `tmp`, each recorded in `created` (for _undo)."""
    missing = [d for d in (tmp, *tmp.parents) if not os.path.lexists(d)]
    for directory in reversed(missing):
        directory.mkdir()
        created.append(directory)
    if tmp not in created:
        tmp.mkdir()  # exists only if it is a complete export _clean_stale kept: not ours to clear
        created.append(tmp)
    (tmp / PARTIAL_MARKER).touch()


def _undo(created: list[Path], tmp: Path) -> None:
    """Removes what a failed export created: its partial directory, then parents left empty."""
    for directory in reversed(created):
        if directory == tmp:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                directory.rmdir()


def _fsync_tree(root: Path) -> None:
    for directory, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(directory))


def _seal(tmp: Path, manifest: dict[str, Any], class_names: list[str]) -> None:
    """Writes labels.txt, syncs every file, then writes manifest.json, last.

    So a partial directory that has our manifest is complete, even after a power
    cut: what _clean_stale relies on.
    """
    write_text_atomic(tmp / LABELS, "".join(f"{c}\n" for c in class_names))
    _fsync_tree(tmp)
    write_json(tmp / MANIFEST, manifest)
    (tmp / PARTIAL_MARKER).unlink()  # from here the manifest proves it is ours


def _replace_dir(tmp: Path, target: Path, overwrite: bool, output_dir: Any) -> None:
    """Moves the finished export into place; the one it replaces is removed only after that."""
    # Checked again: the export took a while and the target may have changed meanwhile.
    _check_target(target, overwrite, output_dir)
    old = None
    if os.path.lexists(target):
        old = _temp_dir(target, "old")
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# Temporary directories next to the target: `.NAME.partial-PID` is the export being written,
# `.NAME.old-PID` the export it replaces, for the moment between the two renames.
_TEMP_KINDS = ("partial", "old")


def _is_export(directory: Path) -> bool:
    """Whether `directory` is an export of ours: its manifest.json is one export_model wrote."""
    try:
        check_json_file(directory / MANIFEST, "output_dir")  # ours are a few kB
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    if not isinstance(manifest, dict):
        return False
    if manifest.get("producer") == PRODUCER:
        return True
    # Manifests written before the `producer` field.
    versions = manifest.get("versions")
    return (
        "format_version" in manifest and isinstance(versions, dict) and "keras_resnet" in versions
    )


def _temp_dir(target: Path, kind: str) -> Path:
    return target.parent / f".{target.name}.{kind}-{os.getpid()}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        # A leftover of this process, or of an earlier one with the same pid (a container's
        # pids repeat from run to run): either way no export is writing it now.
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process, or no pid we could have written
    return True


def _dead_temp_dirs(target: Path) -> list[Path]:
    """Temporary directories of exports to `target` (exactly our names) whose process is gone."""
    # Escaped: a target named `a[1]` or `x*` must not match other exports' directories.
    found = target.parent.glob(f".{glob.escape(target.name)}.*-*")
    names = {f".{target.name}.{kind}-" for kind in _TEMP_KINDS}
    dead = []
    for path in found:
        prefix, _, pid = path.name.rpartition("-")
        ours = f"{prefix}-" in names and pid.isdigit() and not path.is_symlink() and path.is_dir()
        if ours and not _alive(int(pid)):
            dead.append(path)
    return dead


def _clean_stale(target: Path) -> None:
    """Settles what killed exports to `target` left next to it; never loses a complete copy.

    A replacement renames target -> `.NAME.old-PID`, then `.NAME.partial-PID` -> target,
    then removes the old one. A partial gets its manifest.json last, after every file is
    synced, so a temporary directory with our manifest is a complete export. A kill between
    the two renames leaves no target and two complete copies: the newest one (its manifest
    written last; the partial the killed process was installing) becomes the target again.
    A dead process's directory is removed only when it is incomplete and proven ours (our
    partial marker in it, or empty: an empty target that was replaced), or when it is a
    complete export and a complete export is at the target. A look-alike name alone
    proves nothing: such a directory is left alone.
    """
    stale = _dead_temp_dirs(target)
    complete = [d for d in stale if _is_export(d)]
    if complete and not os.path.lexists(target):
        newest = max(complete, key=lambda d: (d / MANIFEST).stat().st_mtime_ns)
        os.replace(newest, target)
        _fsync_dir(target.parent)
        stale.remove(newest)
    target_complete = _is_export(target)
    for directory in stale:
        finished_copy = directory in complete and target_complete
        if finished_copy or (directory not in complete and _unfinished_of_ours(directory)):
            shutil.rmtree(directory, ignore_errors=True)


def _unfinished_of_ours(directory: Path) -> bool:
    return (directory / PARTIAL_MARKER).is_file() or not any(directory.iterdir())


def _check_target(target: Path, overwrite: bool, output_dir: Any) -> None:
    """Refuses a target that is not absent, an empty directory, or (with overwrite) our export."""
    received = f"Received: output_dir={str(output_dir)!r}"
    if target.is_symlink():
        raise ValueError(f"`output_dir` must not be a symbolic link. {received}")
    if not os.path.lexists(target):
        return
    if not target.is_dir():
        raise ValueError(f"`output_dir` is a file, not a directory. {received}")
    if not any(target.iterdir()):
        return
    if not overwrite:
        raise ValueError(
            "`output_dir` already exists; pass overwrite=True (CLI: --overwrite) to replace it. "
            f"{received}"
        )
    if not _is_export(target):
        raise ValueError(
            "`output_dir` must be an earlier keras_resnet export to be overwritten (it has no "
            f"manifest.json of ours): overwrite never replaces other folders. {received}"
        )


def _write_error(reason: Any, output_dir: Any) -> ValueError:
    return ValueError(
        f"cannot write `output_dir` ({reason}). Received: output_dir={str(output_dir)!r}"
    )


def _failed_write(error: BaseException, tmp: Path) -> str | None:
    """Why writing failed (a full disk, no permission), or None if `error` is no failed write."""
    if isinstance(error, OSError):
        return error.strerror or str(error)
    if isinstance(error, tf.errors.OpError) and str(tmp) in error.message:
        # TensorFlow's file errors read "... <path>; No space left on device [Op:SaveV2]".
        return error.message.rsplit("; ", 1)[-1].split(" [Op:")[0].strip()
    return None


def check_output_dir(output_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Refuses an `output_dir` that an export may not create or replace; its absolute path.

    An export goes to a new or empty directory; `overwrite` replaces only an
    earlier export (a directory whose manifest.json keras_resnet's export
    wrote), never a run directory, a folder that holds exports, or a file.
    Leftovers of killed exports to it are settled first (`_clean_stale`).
    Nothing is created.

    Example:
        >>> check_output_dir("runs", overwrite=True)
        Traceback (most recent call last):
        ValueError: `output_dir` must be an earlier keras_resnet export to be overwritten ...
    """
    target = Path(os.path.abspath(output_dir))
    received = f"Received: output_dir={str(output_dir)!r}"
    if not target.name:
        raise ValueError(f"`output_dir` must name a directory. {received}")
    ancestor = next(p for p in target.parents if os.path.lexists(p))
    if not ancestor.is_dir():
        raise ValueError(f"`output_dir` cannot be created: {ancestor} is a file. {received}")
    try:
        if target.parent.is_dir():
            _clean_stale(target)
        _check_target(target, overwrite, output_dir)
    except OSError as e:
        raise _write_error(e.strerror or e, output_dir) from None
    return target
