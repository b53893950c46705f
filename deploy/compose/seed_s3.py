"""Copy a local dataset folder into an S3-compatible object store.

Used by the compose ``seed`` service: it waits until the object store
answers, creates the buckets, and uploads the files that are not there yet
(same key and same size), so running it twice uploads nothing new.

Endpoint and credentials come from the environment only
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_DEFAULT_REGION``), exactly as they reach emodist and the Dask workers.

    python seed_s3.py SRC_DIR s3://BUCKET/PREFIX [--bucket OTHER ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> ``("bucket", "prefix")``.

    Raises
    ------
    ValueError
        If ``url`` is not an ``s3://`` URL with a bucket.
    """
    if not url.startswith("s3://") or not url[5:].split("/", 1)[0]:
        raise ValueError(f"not an s3://BUCKET/PREFIX URL: {url!r}")
    bucket, _, prefix = url[5:].partition("/")
    return bucket, prefix.strip("/")


def plan_upload(src: Path, prefix: str, existing: dict[str, int]) -> list[tuple[Path, str]]:
    """Files under ``src`` to upload as ``(local_path, key)``, skipping same-size keys.

    Parameters
    ----------
    src : Path
        Local folder.
    prefix : str
        Key prefix in the bucket (``""`` for the bucket root).
    existing : dict
        Key -> size of the objects already in the bucket.
    """
    todo = []
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        rel = path.relative_to(src).as_posix()
        key = f"{prefix}/{rel}" if prefix else rel
        if existing.get(key) != path.stat().st_size:
            todo.append((path, key))
    return todo


def wait_for_store(fs, timeout: float) -> None:
    """Poll the object store until it lists buckets or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fs.ls("", refresh=True)
            return
        except Exception as exc:  # noqa: BLE001 - any failure means "not up yet"
            if time.monotonic() > deadline:
                raise SystemExit(f"seed: object store not reachable after {timeout:.0f} s: {exc}")
            time.sleep(1.0)


def _existing(fs, bucket: str, prefix: str) -> dict[str, int]:
    root = f"{bucket}/{prefix}" if prefix else bucket
    if not fs.exists(root):
        return {}
    found = fs.find(root, detail=True)
    return {k[len(bucket) + 1:]: int(v.get("size") or 0) for k, v in found.items()}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="local folder to upload")
    parser.add_argument("dest", help="s3://BUCKET/PREFIX")
    parser.add_argument("--bucket", action="append", default=[],
                        help="another bucket to create (e.g. for the feature store)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to wait for the object store")
    args = parser.parse_args(argv)
    if not args.src.is_dir():
        print(f"seed: {args.src} is not a folder", file=sys.stderr)
        return 2
    try:
        bucket, prefix = split_url(args.dest)
    except ValueError as exc:
        print(f"seed: {exc}", file=sys.stderr)
        return 2

    import s3fs

    fs = s3fs.S3FileSystem()
    wait_for_store(fs, args.timeout)
    for name in dict.fromkeys([bucket, *args.bucket]):
        if not fs.exists(name):
            fs.mkdir(name)
    todo = plan_upload(args.src, prefix, _existing(fs, bucket, prefix))
    for path, key in todo:
        fs.put_file(str(path), f"{bucket}/{key}")
    print(f"seed: uploaded {len(todo)} files to s3://{bucket}/{prefix}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
