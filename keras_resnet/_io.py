"""Files and directories the package writes: atomic writes, strict JSON, run-directory locks.

Every file keras_resnet writes goes through here, so that a process killed at
any moment leaves either the old file or the new one, never half of one:
the data goes to a unique temporary file in the same directory, is flushed
to disk (fsync) and renamed over the target (`os.replace`, atomic on POSIX).

A run directory (train, tune) is locked while a process works in it: a second
process on the same directory is refused at once with a message naming the
holder. The lock is an `fcntl.flock` on a file in the directory, so the kernel
releases it when its holder dies, however it dies; the pid in the file is
then stale and the next process takes the lock over.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import glob
import json
import math
import os
import re
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

LOCK_FILE = ".keras_resnet.lock"


def _fsync_dir(directory: Path) -> None:
    """Makes a rename in `directory` durable (a crash right after keeps it)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _suffix(path: Path) -> str:
    """The suffix a temporary file keeps: Keras' save_weights wants the whole `.weights.h5`."""
    return ".weights.h5" if path.name.endswith(".weights.h5") else path.suffix


def temp_path_for(path: str | os.PathLike) -> Path:
    """A new, unique, not yet existing path beside `path`, keeping its suffix.

    The suffix matters: Keras picks its format from `.keras`/`.h5`, matplotlib
    from `.png`. The name is unique, so processes sharing a directory (a
    tuner's chief and workers) never rename each other's files.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_suffix(path))
    os.close(fd)
    os.unlink(tmp)
    return Path(tmp)


def remove_temp_files(path: str | os.PathLike) -> list[str]:
    """Removes the temporary files `temp_path_for(path)` made that a killed writer left.

    Only for a path no live process writes: a run directory's files under its lock.
    Returns the names removed.
    """
    path = Path(path)
    # Exactly the names temp_path_for makes: mkstemp's 8 random characters between the
    # prefix and the suffix, so no other file beside it matches.
    ours = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}{re.escape(_suffix(path))}")
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*"):
        if not ours.fullmatch(tmp.name):
            continue
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp.name)
    return removed


def commit(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Moves a finished temporary file over `path`: fsync, then an atomic rename."""
    tmp, path = Path(tmp), Path(path)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the file from other users
    os.replace(tmp, path)
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path to write `path` through; renamed over it when the block succeeds.

    On any failure the temporary file is removed and `path` is left as it was.

    Example:

    >>> with atomic_path("runs/demo/best.keras") as tmp:
    ...     model.save(tmp)
    """
    tmp = temp_path_for(path)
    try:
        yield tmp
        commit(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        f.write(text)


def strict(data: Any) -> Any:
    """`data` with every non-finite float replaced by None, so it is strict JSON.

    Python's json writes NaN and Infinity, which JSON does not have and other
    readers (JavaScript, jq, Go) reject.
    """
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: strict(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [strict(v) for v in data]
    return data


def dumps_json(data: Any, indent: int | None = 2) -> str:
    """Strict JSON text: non-finite floats become null (`strict`), never NaN."""
    return json.dumps(strict(data), indent=indent, default=str, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike, data: Any, *, indent: int | None = 2) -> None:
    """`data` as indented strict JSON, written atomically."""
    write_text_atomic(path, dumps_json(data, indent=indent))


def read_json_object(
    path: str | os.PathLike,
    what: str,
    arg: str,
    *,
    error: Callable[[str], Exception] | None = None,
) -> dict[str, Any]:
    """A JSON file that must hold an object; anything else is one ValueError naming `arg`.

    Args:
        path: the file.
        what: what the file should be, for the message (e.g. "a keras_resnet run.json").
        arg: the argument the user gave (e.g. "output_dir").
        error: for a caller whose message has its own form: makes the exception
            raised instead, from the reason ("JSONDecodeError: ...", "a JSON
            list, not an object").
    """
    from keras_resnet._limits import check_json_file

    path = Path(path)
    check_json_file(path, arg)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else e}"
        said = reason
    else:
        if isinstance(data, dict):
            return data
        reason = f"a JSON {type(data).__name__}, not an object"
        said = f"it holds {reason}"
    if error is not None:
        raise error(reason) from None
    raise ValueError(
        f"{path} is not {what} ({said}). Received: {arg}={str(path.parent)!r}"
    ) from None


# --------------------------------------------------------------------------- locks


class DirectoryLockedError(ValueError):
    """Another live process holds the run directory."""


def _describe(holder: dict[str, Any]) -> str:
    parts = [f"pid {holder.get('pid', '?')}"]
    if holder.get("host"):
        parts.append(f"on {holder['host']}")
    if holder.get("command"):
        parts.append(f"({holder['command']})")
    if holder.get("since"):
        parts.append(f"since {holder['since']}")
    return " ".join(parts)


class DirectoryLock:
    """An exclusive, non-blocking lock on a directory, held until `release` (or exit).

    Example:

    >>> with DirectoryLock("runs/demo", arg="output_dir"):
    ...     train_into("runs/demo")
    """

    def __init__(self, directory: str | os.PathLike, *, arg: str, name: str = LOCK_FILE):
        self.directory = Path(directory)
        self.path = self.directory / name
        self.arg = arg
        self._fd: int | None = None
        self.stale: dict[str, Any] | None = None  # the dead holder whose lock was taken over

    def acquire(self) -> DirectoryLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read(fd)
            os.close(fd)
            raise DirectoryLockedError(
                f"`{self.arg}` is in use by another process ({_describe(holder)}); wait for it "
                f"or use another directory. Received: {self.arg}={str(self.directory)!r}"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        previous = self._read(fd)
        if previous.get("pid"):
            self.stale = previous
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:200],
            "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd
        return self

    @staticmethod
    def _read(fd: int) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(os.pread(fd, 4096, 0) or b"{}")
            if isinstance(data, dict):
                return data
        return {}

    def release(self) -> None:
        if self._fd is None:
            return
        # Truncated before unlocking: a lock file with a pid in it is a holder that died.
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def check_writable_dir(path: str | os.PathLike, arg: str) -> Path:
    """Creates `path` if needed; a file in the way, or no permission, is one ValueError."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"`{arg}` is a file, not a directory. Received: {arg}={str(path)!r}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(
            f"`{arg}` cannot be created ({e.strerror or e}). Received: {arg}={str(path)!r}"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"`{arg}` is not writable. Received: {arg}={str(path)!r}")
    return path


def is_lock_file(path: Path) -> bool:
    return path.name.startswith(".keras_resnet") and path.name.endswith(".lock")


def contents(run_dir: Path) -> Iterator[Path]:
    """What a run directory holds besides lock files."""
    return (path for path in run_dir.iterdir() if not is_lock_file(path))


@contextlib.contextmanager
def locked_run_dir(run_dir: Path, name: str = LOCK_FILE) -> Iterator[DirectoryLock]:
    """Creates `run_dir` if needed and holds its lock `name` (see `DirectoryLock`).

    A directory this call creates and that holds nothing but the lock when the
    block fails (a check refused the run before anything was written) is
    removed again.
    """
    created = not run_dir.exists()
    check_writable_dir(run_dir, "output_dir")
    lock = DirectoryLock(run_dir, arg="output_dir", name=name).acquire()
    try:
        yield lock
    except BaseException:
        if created and not any(contents(run_dir)):
            # Unlinked while still held, so no other process can take this lock meanwhile.
            with contextlib.suppress(OSError):
                lock.path.unlink()
                run_dir.rmdir()
        raise
    finally:
        lock.release()


# --------------------------------------------------------------------------- fingerprints


def check_fingerprint(
    run_dir: Path,
    config_name: str,
    fingerprint: dict[str, Any],
    *,
    kind: str,
    hint: str = "use a new directory",
    compare: bool = True,
) -> dict[str, Any] | None:
    """The one check of a run or search directory before it is resumed or started.

    Refuses (ValueError naming `output_dir`) a file in the way, a directory
    that holds something other than a keras_resnet `kind` (no `config_name`,
    or one that is not ours), and, when `compare`, one whose recorded
    fingerprint differs from `fingerprint` (listing the keys that differ).

    Returns:
        The previous record (the parsed `config_name`), or None for a new directory.
    """
    received = f"Received: output_dir={str(run_dir)!r}"
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"`output_dir` is a file, not a directory. {received}")
    config_path = run_dir / config_name
    if not config_path.exists():
        # Another process of the same run (a tuner's chief or worker) may be writing it: its
        # temporary `.{config_name}.*` (see temp_path_for) is not someone else's file.
        in_flight = f".{config_name}."
        if run_dir.is_dir() and any(not p.name.startswith(in_flight) for p in contents(run_dir)):
            raise ValueError(
                f"`output_dir` exists and is not a keras_resnet {kind} directory. {received}"
            )
        return None
    previous = read_json_object(config_path, f"a keras_resnet {config_name}", "output_dir")
    before = previous.get("fingerprint")
    if not isinstance(before, dict):
        raise ValueError(
            f"{config_path} is not a keras_resnet {config_name} (it has no fingerprint). {received}"
        )
    changed = sorted(
        k for k in set(before) | set(fingerprint) if before.get(k) != fingerprint.get(k)
    )
    if compare and changed:
        raise ValueError(
            f"`output_dir` {str(run_dir)!r} holds a {kind} with another configuration "
            f"(differs in: {', '.join(changed)}); {hint}. {received}"
        )
    return previous
