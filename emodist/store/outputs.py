"""Where results go: locations checked before the work, files that appear whole.

A command checks every place it will write (:func:`check_folder`,
:func:`check_file`) before it starts its work, so that a bad ``--out`` is one
line at once rather than an error after an hour of fits.  What it writes is
staged and then published:

- :func:`staged_folder`: a report folder is written into a local temporary
  folder, then published: locally renamed into place (the whole folder when
  it is new; file by file, each replaced atomically, when it exists), to an
  object store uploaded object by object (each object appears whole); the
  file named ``last`` (``report.json``) goes last, so that when it is there
  everything else is too.  An interrupted write leaves no part of a report.
- :func:`write_file`: one file written to a temporary name beside it and
  renamed (locally), or put as one object (each object appears whole).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from emodist.errors import EmodistError
from emodist.store.zarrio import filesystem, is_url

__all__ = ["check_file", "check_folder", "staged_folder", "write_file"]


def _one_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _local_parent_check(path: Path, param: str) -> None:
    probe = path.absolute().parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise EmodistError(f"{path}: {probe} is a file, not a folder", param=param)
    if not os.access(probe, os.W_OK):
        raise EmodistError(f"{path}: cannot write in {probe} (permission denied)", param=param)


def _remote_check(url: str, storage_options, param: str, *, folder: bool) -> None:
    try:
        fs, path = filesystem(url, storage_options)
        bucket = path.split("/", 1)[0]
        if not fs.exists(bucket):
            raise EmodistError(f"{url}: the bucket {bucket} does not exist", param=param)
        if folder and fs.isfile(path.rstrip("/")):
            raise EmodistError(f"{url} is an object, not a folder", param=param)
        if not folder and fs.isdir(path.rstrip("/")):
            raise EmodistError(f"{url} is a folder, not a file", param=param)
    except EmodistError:
        raise
    except Exception as exc:  # noqa: BLE001 - unreachable endpoint, refused credentials
        raise EmodistError(f"{url}: cannot check the location ({type(exc).__name__}: "
                           f"{_one_line(exc)})", param=param) from None


def check_folder(out, *, param: str = "out", storage_options: dict | None = None) -> None:
    """Refuse, in one line, an output folder that cannot be written.

    Parameters
    ----------
    out : str or path-like
        Local folder (may be missing: it is made) or fsspec URL.
    param : str
        The parameter at fault in the error.
    storage_options : dict, optional
        Filesystem options of a URL.

    Raises
    ------
    EmodistError
        ``out`` is a file, lies under a file, cannot be written, or (a URL)
        is an object or in a bucket that does not exist.
    """
    out = str(out)
    if is_url(out):
        _remote_check(out, storage_options, param, folder=True)
        return
    path = Path(out.removeprefix("file://"))
    if path.exists() and not path.is_dir():
        raise EmodistError(f"{path} is a file, not a folder", param=param)
    if path.is_dir():
        if not os.access(path, os.W_OK):
            raise EmodistError(f"{path}: cannot write there (permission denied)", param=param)
        return
    _local_parent_check(path, param)


def check_file(out, *, param: str = "out", storage_options: dict | None = None) -> None:
    """Refuse, in one line, an output file that cannot be written (see :func:`check_folder`)."""
    out = str(out)
    if is_url(out):
        _remote_check(out, storage_options, param, folder=False)
        return
    path = Path(out.removeprefix("file://"))
    if path.is_dir():
        raise EmodistError(f"{path} is a folder, not a file", param=param)
    if path.exists() and not os.access(path, os.W_OK):
        raise EmodistError(f"{path}: cannot write it (permission denied)", param=param)
    _local_parent_check(path, param)


@contextlib.contextmanager
def staged_folder(out, *, last: str | None = None, param: str = "out",
                  storage_options: dict | None = None):
    """Write a folder's files into the temporary folder this yields; publish them on success.

    Parameters
    ----------
    out : str or path-like
        Local folder or fsspec URL.
    last : str, optional
        Name of the file published last (its presence means the rest is there).
    param : str
        The parameter at fault when publishing fails.
    storage_options : dict, optional
        Filesystem options of a URL.

    Yields
    ------
    pathlib.Path
        A new empty local folder; nothing reaches ``out`` when the block raises.
    """
    out = str(out)
    remote = is_url(out)
    final = None if remote else Path(out.removeprefix("file://"))
    where = None
    if final is not None:
        final.absolute().parent.mkdir(parents=True, exist_ok=True)
        where = final.absolute().parent  # the same file system: renames are atomic
    with tempfile.TemporaryDirectory(prefix=".emodist-out-", dir=where) as tmp:
        stage = Path(tmp) / "out"
        stage.mkdir()
        yield stage
        names = sorted((p.name for p in stage.iterdir()), key=lambda n: (n == last, n))
        try:
            if remote:
                fs, root = filesystem(out, storage_options)
                for part in ([n for n in names if n != last], [n for n in names if n == last]):
                    if part:
                        fs.put([str(stage / n) for n in part],
                               [f"{root.rstrip('/')}/{n}" for n in part])
            elif not final.exists():
                stage.rename(final)
            else:
                for n in names:
                    target = final / n
                    if target.is_dir() and not (stage / n).is_dir():
                        raise EmodistError(f"{target} is a folder; cannot put {n} there",
                                           param=param)
                    if (stage / n).is_dir():
                        shutil.rmtree(target, ignore_errors=True)
                    os.replace(stage / n, target)
        except EmodistError:
            raise
        except (OSError, ValueError) as exc:
            raise EmodistError(f"{out}: cannot write there ({_one_line(exc)})",
                               param=param) from None


def write_file(out, data: bytes | str, *, param: str = "out",
               storage_options: dict | None = None) -> None:
    """Write ``data`` to ``out`` so that it appears whole (see the module notes)."""
    out = str(out)
    data = data.encode() if isinstance(data, str) else data
    try:
        if is_url(out):
            fs, path = filesystem(out, storage_options)
            fs.pipe_file(path, data)
            return
        path = Path(out.removeprefix("file://"))
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise EmodistError(f"cannot write {out}: {exc.strerror or _one_line(exc)}",
                           param=param) from None
