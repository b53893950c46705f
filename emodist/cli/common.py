"""Argument helpers shared by the sub-command modules."""

from __future__ import annotations

import json

from emodist.errors import EmodistError


def parse_storage_options(text: str | None) -> dict | None:
    """``--storage-options`` JSON text -> dict (one-line error when malformed)."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EmodistError(f"--storage-options is not valid JSON: {exc.msg} at column {exc.colno}")
    if not isinstance(value, dict):
        raise EmodistError("--storage-options must be a JSON object")
    return value


def add_storage_options(parser) -> None:
    """Add ``--storage-options JSON`` to a parser."""
    parser.add_argument(
        "--storage-options",
        metavar="JSON",
        help='fsspec options for remote paths, e.g. \'{"client_kwargs": {"endpoint_url": '
        '"http://127.0.0.1:9000"}}\'; credentials may also come from the AWS environment',
    )


def add_dataset_options(parser) -> None:
    """Options that decide which tracks and labels a dataset yields."""
    parser.add_argument(
        "--label-rule",
        choices=("listener", "mean"),
        default="listener",
        help="dominant emotion: argmax of the listener-normalised votes (default) or of the "
        "plain mean of the 0/1 votes",
    )
    parser.add_argument(
        "--min-class-tracks",
        type=int,
        metavar="N",
        help="drop classes with fewer than N tracks (default: fewer than 2%% of the tracks)",
    )
