"""A command's log file: what workers and libraries write, kept off the terminal.

Dask writes a worker's traceback (a task that failed, a worker lost, a
Ctrl-C) to the standard error of the process it runs in, and C libraries
write there too (libmpg123's ``Note: Illegal Audio-MPEG-Header`` for a file
that is not an MP3).  While a command runs, :func:`run_log` points file
descriptor 2 of the process at a log file, so that all of it, and the
workers of a local cluster (which inherit the descriptor), go there; the
command's own lines (errors, progress, ``emodist`` log lines) still reach
the terminal through ``sys.stderr``, which keeps the original descriptor.
The terminal gets one line per problem; the line names the log file when
the log holds something.  ``--debug`` leaves everything on the terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["RunLog", "default_log_path", "run_log"]


@dataclass(frozen=True)
class RunLog:
    """The log file of a running command.

    Attributes
    ----------
    path : str
        Where the file is.  A command's part of it starts with a header line
        (the command, its time and process id); a part that holds nothing
        else is taken out again at the command's end (the file removed when
        that leaves it empty).
    start : int
        Size of the file before the header (earlier commands' parts).
    header : int
        Bytes of the header line.
    """

    path: str
    start: int = 0
    header: int = 0

    def holds_something(self) -> bool:
        """Whether anything but the header has been written to the log by this command."""
        try:
            return os.path.getsize(self.path) > self.start + self.header
        except OSError:
            return False

    def mention(self) -> str:
        """`` (details in PATH)`` when the log holds something, else ``""``."""
        return f" (details in {self.path})" if self.holds_something() else ""

    def close(self) -> None:
        """Take this command's part out again when it holds only the header."""
        if self.holds_something():
            return
        with contextlib.suppress(OSError):
            if self.start:
                os.truncate(self.path, self.start)
            else:
                os.remove(self.path)


def default_log_path(command: str | None, store: str | None = None) -> str:
    """``STORE.log`` beside a local store, else ``emodist-COMMAND-PID.log`` in the temp folder.

    Parameters
    ----------
    command : str or None
        The sub-command's name.
    store : str, optional
        The command's store location (``--store``); a URL (``s3://...``) has
        its log in the temporary folder.
    """
    if store and "://" not in store.removeprefix("file://"):
        return os.path.abspath(store.removeprefix("file://").rstrip("/\\")) + ".log"
    name = f"emodist-{command or 'run'}-{os.getpid()}.log"
    return os.path.join(tempfile.gettempdir(), name)


def _open_log(path: str) -> tuple[int, str]:
    """A descriptor appending to ``path`` (or, if that cannot be written, a temp file)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    try:
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(folder):
            return os.open(path, flags, 0o644), path
    except OSError:
        pass  # a read-only or full disk: the log goes to the temp folder
    fd, fallback = tempfile.mkstemp(prefix="emodist-", suffix=".log")
    return fd, fallback


@contextlib.contextmanager
def run_log(path: str, *, cluster: bool = False, title: str = "") -> Iterator[RunLog]:
    """Send file descriptor 2 of this process (and its children) to a log file.

    Parameters
    ----------
    path : str
        The log file (appended to; made if missing; a folder that cannot be
        written has the log go to a temporary file instead).
    cluster : bool
        The command may start or reach a Dask cluster: ``distributed`` is
        imported first, so that its log handlers (bound to ``sys.stderr``
        at import) write into the log (importing it costs start-up time,
        paid only by those commands).
    title : str
        The command line, for the header of the command's part of the log.

    Yields
    ------
    RunLog
        ``sys.stderr`` stays on the terminal while the block runs.
    """
    if cluster:
        import distributed  # noqa: F401 - see above: its handlers must bind descriptor 2

    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no standard error at all: nothing to redirect
        yield RunLog(os.devnull)
        return
    fd, path = _open_log(path)
    start = os.fstat(fd).st_size
    header = (f"--- {title or 'emodist'} at {time.strftime('%Y-%m-%d %H:%M:%S')} "
              f"(pid {os.getpid()})\n").encode()
    try:
        os.write(fd, header)
    except OSError:  # a full disk: the command's own error will say so
        header = b""
    os.dup2(fd, 2)
    os.close(fd)
    # only the interpreter's own stderr writes to descriptor 2; one replaced
    # by a caller (a test's capture) is left alone
    swapped = sys.stderr is sys.__stderr__
    if swapped:
        # closed in the finally below
        sys.stderr = open(saved, "w", buffering=1,  # noqa: SIM115
                          encoding=sys.__stderr__.encoding, errors="backslashreplace",
                          closefd=False)
    log = RunLog(path, start, len(header))
    # a log that cannot be written (a full disk) says nothing: logging would
    # otherwise print its own error, with a traceback, on the terminal
    raising, logging.raiseExceptions = logging.raiseExceptions, False
    try:
        yield log
    finally:
        logging.raiseExceptions = raising
        for stream in (sys.stderr, sys.__stderr__):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        if swapped:
            terminal, sys.stderr = sys.stderr, sys.__stderr__
            terminal.close()
        os.dup2(saved, 2)
        os.close(saved)
        log.close()
