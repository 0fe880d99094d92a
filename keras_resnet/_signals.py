"""Ctrl-C and SIGTERM: one line, exit 130 or 143, and a run that the same command resumes.

`interruptible` (the `keras-resnet` command) turns the first SIGINT or SIGTERM
into KeyboardInterrupt (`Terminated` for SIGTERM, one of its kind), so the work
unwinds as it does for Ctrl-C: locks released, temporary files removed. A
second signal stops the process at once (`os._exit`) with the same code: every
file keras_resnet writes goes through a temporary file and a rename
(`keras_resnet._io`), so what is on disk is the state before the write in
flight, and the same command resumes from it.

While a model trains (`deferred`, with the `StopOnSignal` callback), the first
signal is only noted and raised at the next batch or epoch boundary: raised
inside TensorFlow's step it could surface as a SystemError from CPython
("bad argument to internal function", seen with a SIGINT during `fit`), and a
checkpoint being written is finished first. Outside the command (a notebook
calling `train`), `deferred` does the same for SIGINT, and a second SIGINT
raises at once instead of ending the process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal, as shells report


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Python raises KeyboardInterrupt for SIGINT."""

    signum = signal.SIGTERM


_state: dict = {"received": [], "deferring": False, "pending": None}


def exit_code(error: KeyboardInterrupt) -> int:
    return EXIT_CODES[getattr(error, "signum", signal.SIGINT)]


def _interrupt(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def raise_if_pending() -> None:
    """Raises the signal noted while deferring, if one was (at a point safe to raise)."""
    signum, _state["pending"] = _state["pending"], None
    if signum is not None:
        raise _interrupt(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def interruptible(prefix: str) -> Iterator[None]:
    """SIGINT and SIGTERM as described in the module doc within the block; `prefix` starts
    the line printed when a second signal stops the process."""
    if not _in_main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def handle(signum, frame):
        if _state["received"]:
            sys.stderr.write(
                f"{prefix} interrupted again; stopped at once; rerun the same command to resume.\n"
            )
            sys.stderr.flush()
            os._exit(EXIT_CODES[signum])
        _state["received"].append(signum)
        if _state["deferring"]:
            _state["pending"] = signum
            return
        raise _interrupt(signum)

    handle.keras_resnet = True
    previous = {signum: signal.signal(signum, handle) for signum in EXIT_CODES}
    try:
        yield
    finally:
        if _state["received"]:
            # On its way out: Python's finalization puts back the default handlers of
            # Python ones, and a second Ctrl-C while TensorFlow shuts down would end the
            # process by SIGINT (status -2) instead of with its exit code.
            for signum in EXIT_CODES:
                signal.signal(signum, signal.SIG_IGN)
        else:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            _state.update(deferring=False, pending=None)


def ignore_signals_from_now() -> None:
    """For a process whose work is done: SIGINT and SIGTERM are ignored from now on, and
    it ends with its own exit code. Python's default handlers, put back when the work
    ended, would end it by the signal (status -2 or -15, seen during TensorFlow's
    shutdown) as if the work had been cut short; a Python handler would not do either,
    since Python's finalization puts the default back in place of its own handlers (not
    of SIG_IGN). SIGKILL still ends a shutdown that hangs."""
    for signum in EXIT_CODES:
        signal.signal(signum, signal.SIG_IGN)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Within the block a signal is raised at the next `raise_if_pending` (see the doc)."""
    if not _in_main_thread():
        yield
        return
    ours = getattr(signal.getsignal(signal.SIGINT), "keras_resnet", False)
    previous = None
    if not ours:  # a library call: SIGINT alone; a second one raises at once

        def note(signum, frame):
            if _state["pending"] is not None:
                raise KeyboardInterrupt()
            _state["pending"] = signum

        previous = signal.signal(signal.SIGINT, note)
    _state["deferring"] = True
    try:
        yield
    except BaseException:
        _state["pending"] = None  # already unwinding
        raise
    finally:
        _state["deferring"] = False
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    raise_if_pending()
