"""Argument helpers shared by the sub-command modules; every default comes from the spec."""

from __future__ import annotations

import json

from emodist.errors import EmodistError
from emodist.spec import LABEL_RULES, ExtractionSpec, Runtime

#: Locations that may have their own storage options.
LOCATIONS = ("dataset", "store", "model")


def add_command(subparsers, name: str, *, help: str, description: str, epilog: str):
    """A sub-command parser whose examples keep their line breaks."""
    import argparse

    return subparsers.add_parser(name, help=help, description=description, epilog=epilog,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)


def parse_json_object(text: str | None, flag: str) -> dict | None:
    """JSON text of an option -> dict (one-line error when malformed)."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EmodistError(f"{flag} is not valid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(value, dict):
        raise EmodistError(f"{flag} must be a JSON object")
    return value


def add_storage_options(parser, locations=LOCATIONS) -> None:
    """``--storage-options JSON`` for every location, and one option per location."""
    parser.add_argument(
        "--storage-options", metavar="JSON",
        help='fsspec options for remote paths, e.g. \'{"client_kwargs": {"endpoint_url": '
        '"http://127.0.0.1:9000"}}\'; credentials may also come from the AWS environment')
    for loc in locations if len(locations) > 1 else ():
        parser.add_argument(f"--{loc}-storage-options", metavar="JSON",
                            help=f"fsspec options for the {loc} only (override --storage-options)")


def storage_from_args(args, locations=LOCATIONS) -> dict:
    """Location -> storage options, from ``--storage-options`` and the per-location ones."""
    common = parse_json_object(getattr(args, "storage_options", None), "--storage-options")
    out = {}
    for loc in locations:
        own = parse_json_object(getattr(args, f"{loc}_storage_options", None),
                                f"--{loc}-storage-options")
        chosen = own if own is not None else common
        if chosen:
            out[loc] = chosen
    return out


def parse_storage_options(text: str | None) -> dict | None:
    """``--storage-options`` JSON text -> dict."""
    return parse_json_object(text, "--storage-options")


def add_dataset_options(parser) -> None:
    """Options that decide which tracks and labels a dataset yields."""
    d = ExtractionSpec()
    parser.add_argument(
        "--label-rule", choices=LABEL_RULES, default=d.label_rule,
        help="dominant emotion: argmax of the listener-normalised votes (default) or of the "
        "plain mean of the 0/1 votes")
    parser.add_argument(
        "--min-class-tracks", type=int, metavar="N",
        help=f"drop classes with fewer than N tracks (default: fewer than "
        f"{d.min_class_share:.0%} of the tracks)".replace("%", "%%"))
    parser.add_argument(
        "--min-class-share", type=float, default=d.min_class_share, metavar="F",
        help=f"drop classes with less than this share of the tracks (default {d.min_class_share})")


def add_segment_options(parser) -> None:
    """``--segment-seconds``, ``--hop-seconds``, ``--min-last-seconds`` (spec defaults)."""
    d = ExtractionSpec()
    parser.add_argument("--segment-seconds", type=float, default=d.segment_seconds, metavar="S",
                        help=f"window length (default {d.segment_seconds:g})")
    parser.add_argument("--hop-seconds", type=float, default=None, metavar="S",
                        help="hop between windows (default: the window length; less overlaps)")
    parser.add_argument("--min-last-seconds", type=float, metavar="S",
                        help="keep a partial last piece at least S long (default: drop it)")


def spec_from_args(args, groups=()) -> ExtractionSpec:
    """The :class:`ExtractionSpec` that the dataset and segment options describe."""
    d = ExtractionSpec()
    return ExtractionSpec(
        groups=tuple(groups),
        segment_seconds=getattr(args, "segment_seconds", d.segment_seconds),
        hop_seconds=getattr(args, "hop_seconds", None),
        min_last_seconds=getattr(args, "min_last_seconds", None),
        label_rule=args.label_rule,
        min_class_tracks=args.min_class_tracks,
        min_class_share=args.min_class_share,
    )


def add_cluster_options(parser) -> None:
    """Options choosing the Dask cluster."""
    g = parser.add_argument_group("cluster")
    g.add_argument("--scheduler", metavar="ADDRESS", help="connect to this scheduler (tcp://HOST:8786)")
    g.add_argument("--scheduler-file", metavar="FILE", help="connect through a scheduler file")
    g.add_argument("--workers", type=int, metavar="N", help="local cluster: worker processes")
    g.add_argument("--threads-per-worker", type=int, metavar="T", help="local cluster: threads each")
    g.add_argument("--memory-limit", metavar="SIZE", help="local cluster: memory per worker (4GiB)")
    g.add_argument("--resources", metavar="NAME=N[,...]",
                   help="Dask worker resources every chunk task needs (its CPU stage when "
                   "--model-resources is given), e.g. CPU=1")
    g.add_argument("--model-resources", metavar="NAME=N[,...]",
                   help="Dask worker resources of the model stage, e.g. GPU=1: each chunk "
                   "becomes a CPU task (decode, prepare, handcrafted) and a model task on a "
                   "worker started with 'dask worker ... --resources GPU=1'")


def parse_resources(text: str | None, flag: str) -> dict | None:
    """``"GPU=1,MEM=2e9"`` -> ``{"GPU": 1.0, "MEM": 2e9}`` (one-line error when malformed)."""
    if not text:
        return None
    out = {}
    for part in str(text).replace(" ", ",").split(","):
        if not part:
            continue
        name, eq, value = part.partition("=")
        try:
            amount = float(value)
        except ValueError:
            amount = -1.0
        if not eq or not name or amount <= 0:
            raise EmodistError(f"{flag} takes NAME=N[,NAME=N...] with N > 0, got {text!r}")
        out[name] = amount
    return out or None


def runtime_from_args(args, **extra) -> Runtime:
    """The :class:`Runtime` of the cluster, storage and progress options."""
    for flag, value in (("--batch-size", getattr(args, "batch_size", None)),
                        ("--chunk-segments", getattr(args, "chunk_segments", None))):
        if value is not None and value < 1:
            raise EmodistError(f"{flag} must be at least 1")
    kw = {"scheduler": getattr(args, "scheduler", None),
          "scheduler_file": getattr(args, "scheduler_file", None),
          "n_workers": getattr(args, "workers", None),
          "threads_per_worker": getattr(args, "threads_per_worker", None),
          "memory_limit": getattr(args, "memory_limit", None),
          "storage": storage_from_args(args),
          "chunk": getattr(args, "chunk_segments", None),
          "progress": not getattr(args, "no_progress", False),
          "resources": parse_resources(getattr(args, "resources", None), "--resources"),
          "model_resources": parse_resources(getattr(args, "model_resources", None),
                                             "--model-resources")}
    if getattr(args, "device", None):
        kw["device"] = args.device
    if getattr(args, "batch_size", None):
        kw["batch_size"] = args.batch_size
    if getattr(args, "plan_on", None):
        kw["plan_on"] = args.plan_on
    kw.update(extra)
    return Runtime(**kw)
