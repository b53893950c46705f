"""One writer per store: a lease object in the store, refreshed while a run writes.

A run that writes a store (``emodist extract``, ``emodist run``) first takes
the store's lock, :data:`LOCK_NAME` inside the store: a small JSON object
naming the run (host, process id, a run id, the command), when it started and
when its heartbeat was last refreshed.  A thread refreshes the heartbeat every
``lease_s / 4`` seconds while the run lasts; the lock is removed when the run
ends.  A second writer is refused in one line naming the first; a lock whose
heartbeat is older than its lease (a run that crashed), or whose process is
gone on this host, is stale and taken over with a log line; ``--break-lock``
takes over any lock.  Readers are never blocked: :func:`reader_note` says on
stderr that a store is being written.

What is guaranteed
------------------
- Local disks: every change of the lock (create, refresh, take-over, release)
  happens under an exclusive ``flock`` of the store folder and is written to a
  temporary name, then renamed: two runs on one machine cannot both hold it,
  and a reader never sees half a lock.  On network file systems ``flock`` is
  as good as the file system makes it.
- S3 (s3fs): the lock is created with a conditional write (``If-None-Match:
  *``) and refreshed or taken over with ``If-Match`` on the ETag last seen, so
  two runs cannot both win; after each write the object is read back and its
  run id compared, which also covers servers that ignore the conditions (the
  guarantee then drops to "last writer wins, and the loser notices on
  read-back").  Release reads the object back and deletes it if it is still
  this run's: the window between the two is not atomic.
- Other fsspec filesystems: write, read back and compare run ids (last writer
  wins, the loser notices).
- Staleness compares the heartbeat with this machine's clock: hosts whose
  clocks differ by more than the lease may misjudge it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Self

from emodist.errors import StoreError
from emodist.store.faults import storage_error
from emodist.store.handle import as_store, is_url
from emodist.store.zarrio import LOCK_NAME

__all__ = ["LEASE_SECONDS", "LOCK_NAME", "Lease", "StoreLock", "acquire", "read_lock",
           "reader_note"]

log = logging.getLogger(__name__)

#: Seconds a lock stays valid after its last heartbeat (``EMODIST_LOCK_LEASE_S`` overrides).
LEASE_SECONDS = 60.0


def lease_seconds() -> float:
    """The lease of new locks: :data:`LEASE_SECONDS` or ``$EMODIST_LOCK_LEASE_S``."""
    try:
        return max(1.0, float(os.environ.get("EMODIST_LOCK_LEASE_S", LEASE_SECONDS)))
    except ValueError:
        return LEASE_SECONDS


@dataclass(frozen=True)
class Lease:
    """The content of a store's lock.

    Written as JSON into the lock object when a run takes the store, and
    rewritten with a new ``heartbeat`` while the run goes on; a lock whose
    ``heartbeat + lease_s`` has passed is stale (its writer is presumed gone).

    Attributes
    ----------
    run_id : str
        Unique id of the writing run.
    host : str
        Host name of the writer.
    pid : int
        Process id of the writer on ``host``.
    command : str
        What writes (``extract``, ``run``).
    started, heartbeat : float
        Unix times of the lock's creation and of its last refresh.
    lease_s : float
        Seconds the lock stays valid after ``heartbeat``.
    """

    run_id: str
    host: str
    pid: int
    command: str
    started: float
    heartbeat: float
    lease_s: float

    @property
    def expires(self) -> float:
        """Unix time after which the lock is stale."""
        return self.heartbeat + self.lease_s

    def gone(self) -> bool:
        """Whether the writer's process is known to be gone (same host only)."""
        if self.host != socket.gethostname() or self.pid == os.getpid():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:  # another user's process: alive
            return False
        return False

    def stale(self, now: float | None = None) -> bool:
        """Whether the lock has expired or its process is gone."""
        return (now or time.time()) > self.expires or self.gone()

    def describe(self, now: float | None = None) -> str:
        """``emodist extract on HOST (pid N, run ID), heartbeat S s ago``."""
        ago = max(0.0, (now or time.time()) - self.heartbeat)
        return (f"emodist {self.command} on {self.host} (pid {self.pid}, run "
                f"{self.run_id[:12]}), heartbeat {ago:.0f} s ago")

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Lease | None:
        try:
            rec = json.loads(data)
            return cls(run_id=str(rec["run_id"]), host=str(rec["host"]), pid=int(rec["pid"]),
                       command=str(rec.get("command", "extract")),
                       started=float(rec["started"]), heartbeat=float(rec["heartbeat"]),
                       lease_s=float(rec["lease_s"]))
        except (ValueError, KeyError, TypeError):
            return None  # half-written or foreign: treated as stale


def _lock_path(url, storage_options) -> tuple:
    h = as_store(url, storage_options)
    return h.fs, h.path(LOCK_NAME)


def _local(url) -> bool:
    return not is_url(url)


def read_lock(url, storage_options: dict | None = None) -> Lease | None:
    """The lease of the store at ``url`` (a location or a handle); ``None`` when nobody holds it.

    A lock that cannot be parsed is returned as a stale lease of run ``?``.
    """
    fs, path = _lock_path(url, storage_options)
    try:
        data = fs.cat_file(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    lease = Lease.from_json(data)
    return lease or Lease("?", "?", -1, "?", 0.0, 0.0, 0.0)


def _etag(fs, path) -> str | None:
    try:
        fs.invalidate_cache(path)
        return fs.info(path).get("ETag")
    except (FileNotFoundError, OSError):
        return None


class StoreLock:
    """A held store lock: a heartbeat thread and :meth:`release`.

    Made by :func:`acquire`; a context manager.  When another run takes the
    lock over while this one writes, :meth:`release` (and ``__exit__``)
    raise a :class:`~emodist.errors.StoreError` naming it.
    """

    def __init__(self, url: str, storage_options, lease: Lease, etag: str | None):
        self.url, self.storage_options, self.lease = url, storage_options, lease
        self._etag = etag
        self.lost_to: Lease | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="emodist-store-lock",
                                        daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.lease.lease_s / 4):
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - a refresh that fails is retried
                log.warning("%s: could not refresh the store lock (%s)", self.url, exc)
            if self.lost_to is not None:
                log.warning("%s: the store lock was taken over by %s while this run writes",
                            self.url, self.lost_to.describe())
                return

    def refresh(self) -> None:
        """Write a new heartbeat (when the lock is still this run's)."""
        new = Lease(**{**asdict(self.lease), "heartbeat": time.time()})
        ok, other, etag = _swap(self.url, self.storage_options, expect=self.lease,
                                etag=self._etag, new=new)
        if ok:
            self.lease, self._etag = new, etag
        else:
            self.lost_to = other or Lease("?", "?", -1, "?", 0.0, 0.0, 0.0)

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if it is still this run's."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        if self.lost_to is None:
            _remove(self.url, self.storage_options, self.lease)
        else:
            raise StoreError(f"{self.url}: another run took the store over while this one "
                             f"wrote ({self.lost_to.describe()}); check it with emodist "
                             "verify", param="store")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        try:
            self.release()
        except Exception as err:
            if exc is not None:  # the error in flight is the one to report
                log.debug("%s: the store lock was not released (%s)", self.url, err)
                return
            if isinstance(err, StoreError):
                raise
            line = storage_error(err, self.url)
            if line is None:
                raise
            raise line from None


@contextlib.contextmanager
def _guard(url):
    """An exclusive ``flock`` of a local store folder (created if missing)."""
    import fcntl

    path = str(url).removeprefix("file://")
    for _ in range(10):  # a folder removed by a releasing run between our steps: again
        try:
            os.makedirs(path, exist_ok=True)
            fd = os.open(path, os.O_RDONLY)
        except FileExistsError:
            raise StoreError(f"{path} is a file, not a store folder", param="store") from None
        except PermissionError:
            raise StoreError(f"{path}: cannot write there (permission denied)",
                             param="store") from None
        except FileNotFoundError:
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    else:
        raise StoreError(f"{path}: the store folder keeps disappearing", param="store")
    try:
        yield
    finally:
        os.close(fd)


def _write_local(path: str, data: bytes) -> None:
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _swap(url: str, options, *, expect: Lease | None, etag: str | None,
          new: Lease) -> tuple[bool, Lease | None, str | None]:
    """Replace the lock holding ``expect`` (``None``: no lock) by ``new``.

    Returns ``(done, current, etag)``: ``current`` is the lease found
    instead when not done.
    """
    fs, path = _lock_path(url, options)
    if _local(url):
        with _guard(url):
            cur = read_lock(url, options)
            if (cur.run_id if cur else None) != (expect.run_id if expect else None):
                return False, cur, None
            _write_local(path.removeprefix("file://"), new.to_json())
            return True, new, None
    if expect is not None and not etag:  # no ETag to condition on: compare first
        cur = read_lock(url, options)
        if cur is None or cur.run_id != expect.run_id:
            return False, cur, None
    mode = "create" if expect is None else "overwrite"
    kwargs = {"IfMatch": etag} if expect is not None and etag else {}
    try:
        fs.pipe_file(path, new.to_json(), mode=mode, **kwargs)
    except TypeError:  # a filesystem without conditional writes
        if expect is None and fs.exists(path):
            return False, read_lock(url, options), None
        fs.pipe_file(path, new.to_json())
    except (FileNotFoundError, PermissionError):  # no bucket, refused: the caller says so
        raise
    except OSError as exc:  # FileExistsError, or 412 on If-Match: someone else's lock is there
        if not isinstance(exc, FileExistsError) and exc.errno != errno.EINVAL:
            raise
        return False, read_lock(url, options), None
    cur = read_lock(url, options)
    if cur is None or cur.run_id != new.run_id:
        return False, cur, None
    return True, cur, _etag(fs, path)


def _remove(url: str, options, lease: Lease) -> None:
    fs, path = _lock_path(url, options)
    if _local(url):
        with contextlib.suppress(FileNotFoundError), _guard(url):
            cur = read_lock(url, options)
            if cur is not None and cur.run_id == lease.run_id:
                os.remove(path.removeprefix("file://"))
            with contextlib.suppress(OSError):  # a folder made for the lock, left empty
                os.rmdir(str(url).removeprefix("file://"))
        return
    cur = read_lock(url, options)
    if cur is not None and cur.run_id == lease.run_id:
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)


def acquire(url: str, storage_options: dict | None = None, *, command: str = "extract",
            break_lock: bool = False, lease_s: float | None = None) -> StoreLock:
    """Take the lock of the store at ``url`` (created folder or prefix if missing).

    Parameters
    ----------
    url : str or StoreHandle
        Store location or handle.
    storage_options : dict, optional
        Filesystem options of a location.
    command : str
        What takes it (shown to the others).
    break_lock : bool
        Take over a lock that another run holds.
    lease_s : float, optional
        Lease of the lock (default :func:`lease_seconds`).

    Returns
    -------
    StoreLock
        Release it (or leave its ``with`` block) when the run ends.

    Raises
    ------
    StoreError
        Another run holds a live lock and ``break_lock`` is off (``param="store"``).
    """
    url = as_store(url, storage_options)
    storage_options = url.storage_options
    lease_s = float(lease_s or lease_seconds())
    now = time.time()
    new = Lease(run_id=uuid.uuid4().hex, host=socket.gethostname(), pid=os.getpid(),
                command=command, started=now, heartbeat=now, lease_s=lease_s)
    seen: Lease | None = None
    for _ in range(5):  # a lock that changes under us is read again
        fs, path = _lock_path(url, storage_options)
        etag = None if _local(url) else url.retry(_etag, fs, path, what="reading the lock")
        seen = url.retry(read_lock, url, what="reading the lock")
        if seen is not None:
            if not (seen.stale() or break_lock):
                raise StoreError(
                    f"{url} is being written by {seen.describe()}; wait for it to finish, or "
                    "pass --break-lock if that run is gone", param="store")
            why = "stale" if seen.stale() else "live, --break-lock"
            log.warning("%s: taking over the lock of %s (%s)", url, seen.describe(), why)
        ok, cur, new_etag = _swap(url, storage_options, expect=seen, etag=etag, new=new)
        if ok:
            return StoreLock(url, storage_options, new, new_etag)
        if cur is not None and not (cur.stale() or break_lock):
            raise StoreError(f"{url} is being written by {cur.describe()}; wait for it to "
                             "finish, or pass --break-lock if that run is gone", param="store")
    raise StoreError(f"{url}: could not take the store lock (it kept changing; last seen: "
                     f"{seen.describe() if seen else 'none'})", param="store")


#: Stores already noted in this process (one note per store).
_NOTED: set = set()


def reader_note(url: str, storage_options: dict | None = None) -> str | None:
    """Say on the log (once per store) that a store is being written; returns the line.

    Readers still read: what they see may be incomplete.
    """
    try:
        lease = read_lock(url, storage_options)
    except Exception:  # noqa: BLE001 - the note is informative; the read itself reports
        return None
    mine = lease is not None and lease.pid == os.getpid() and lease.host == socket.gethostname()
    if lease is None or mine or str(url) in _NOTED:
        return None
    _NOTED.add(str(url))
    if lease.stale():
        line = (f"{url}: a stopped run left its lock ({lease.describe()}); the store may be "
                "incomplete: rerun it to resume, or check it with emodist verify")
    else:
        line = f"{url} is being written by {lease.describe()}; what is read may be incomplete"
    log.warning(line)
    return line
