"""Argument helpers shared by the sub-command modules: one vocabulary of flags.

The same idea has the same flag in every command (``docs/reference/cli-vocabulary.md``):
``--out`` where results go, ``--quiet`` for no progress, ``--workers`` for
parallelism, ``--features`` for feature groups (``a+b`` joined), ``--columns`` for
feature names or patterns, ``--seed``, ``--overwrite``, ``--scheduler``,
``--storage-options``.  An old spelling stays one release as a hidden alias
(:func:`add_alias`) that still works and says once on stderr what replaces it.
Every default comes from the spec.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence

from emodist.errors import EmodistError
from emodist.spec import LABEL_RULES, ExtractionSpec, Runtime

__all__ = [
    "DEADLINE_ENV", "LOCATIONS", "DeprecatedAlias", "LibraryChoices", "StorageDeadline",
    "add_alias", "add_cluster_options", "add_command", "add_dataset_options", "add_log",
    "add_once", "add_out", "add_quiet", "add_scheduler_options", "add_segment_options",
    "add_storage_options", "failure_line", "parse_json_object", "parse_resources",
    "parse_storage_options", "runtime_from_args", "spec_from_args", "storage_from_args",
]

#: Locations that may have their own storage options.
LOCATIONS = ("dataset", "store", "model")


class LibraryChoices(Sequence):
    """The choices of an option: a library constant, imported when first needed.

    For constants of modules that are slow to import (the store's pull in
    xarray): building the parser does not import them, ``--help`` of the
    command and checking a given value do.  Give the option a ``metavar``
    (argparse lists the choices in it otherwise) and ``%(choices)s`` in its help.

    Parameters
    ----------
    module, name : str
        Where the constant is: ``getattr(importlib.import_module(module), name)``.
    """

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def _values(self) -> tuple:
        return tuple(getattr(importlib.import_module(self.module), self.name))

    def __getitem__(self, index):
        return self._values()[index]

    def __len__(self) -> int:
        return len(self._values())


def add_command(subparsers, name: str, *, help: str, description: str, epilog: str | None = None):
    """A sub-command parser whose examples keep their line breaks."""
    return subparsers.add_parser(name, help=help, description=description, epilog=epilog,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)


class DeprecatedAlias(argparse.Action):
    """An old spelling of an option: hidden from ``--help``, says what replaces it on stderr.

    Parameters
    ----------
    use : str
        The flag to use instead (named in the deprecation line).
    nargs, const, ... :
        As for :class:`argparse.Action`; ``nargs=0`` stores ``const`` (a switch).
    """

    def __init__(self, option_strings, dest, *, use: str, nargs=None, const=None, **kwargs):
        kwargs["help"] = argparse.SUPPRESS
        kwargs.setdefault("default", argparse.SUPPRESS)  # the new option's default stands
        super().__init__(option_strings, dest, nargs=nargs, const=const, **kwargs)
        self.use = use

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"emodist: {option_string} is deprecated; use {self.use}", file=sys.stderr)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def add_alias(container, *old: str, use: str, **kwargs) -> None:
    """Hidden deprecated spellings ``old`` of the option ``use`` (same destination and type).

    ``kwargs`` override what is copied from ``use`` (e.g. ``dest`` for an alias
    whose value goes elsewhere).  Spellings the parser has already are skipped.
    """
    old = [o for o in old if o not in container._option_string_actions]
    if not old:
        return
    new = container._option_string_actions[use]
    kw = {"dest": new.dest, "nargs": new.nargs, "const": new.const, "type": new.type,
          "choices": new.choices, "metavar": new.metavar}
    kw.update(kwargs)
    container.add_argument(*old, action=DeprecatedAlias, use=use, **kw)


def add_once(container, *flags: str, **kwargs) -> None:
    """Add an option unless the parser has it already (``run`` = extract + evaluate options)."""
    if not any(f in container._option_string_actions for f in flags):
        container.add_argument(*flags, **kwargs)


def add_out(container, *, help: str, metavar: str = "DIR", aliases=(), **kwargs) -> None:
    """``--out``: where a command's results go (a folder or a file), with old spellings."""
    add_once(container, "--out", metavar=metavar, help=help, **kwargs)
    if aliases:
        add_alias(container, *aliases, use="--out")


def add_quiet(container, help: str = "no progress lines on stderr") -> None:
    """``--quiet`` (``--no-progress`` stays as a deprecated alias)."""
    if "--quiet" in container._option_string_actions:
        return
    container.add_argument("--quiet", action="store_true", help=help)
    add_alias(container, "--no-progress", use="--quiet")


def add_log(container, **kwargs) -> None:
    """``--log FILE``: where worker tracebacks and library messages go (:mod:`emodist.cli.runlog`).

    Accepted before the command (``emodist --log F extract ...``) and after
    it, by the commands that run a cluster; given after, it wins.
    """
    kwargs.setdefault("default", argparse.SUPPRESS)  # the top-level value stands
    add_once(container, "--log", metavar="FILE",
             help="file for worker tracebacks and decoder messages (default: STORE.log beside "
             "a local store, else emodist-COMMAND-PID.log in the temporary folder; removed "
             "when nothing was written)", **kwargs)


def add_scheduler_options(container, what: str = "") -> None:
    """``--scheduler`` and ``--scheduler-file``: an existing Dask cluster."""
    add_once(container, "--scheduler", metavar="ADDRESS",
             help=f"connect to this Dask scheduler (tcp://HOST:8786){what}")
    add_once(container, "--scheduler-file", metavar="FILE",
             help=f"connect to the Dask scheduler of this scheduler file{what}")
    add_log(container)


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
    add_once(
        parser, "--storage-options", metavar="JSON",
        help='fsspec options for remote paths, e.g. \'{"client_kwargs": {"endpoint_url": '
        '"http://127.0.0.1:9000"}}\'; credentials may also come from the AWS environment')
    add_once(
        parser, "--storage-deadline", metavar="SECONDS", type=_deadline, action=StorageDeadline,
        help="retry a store that cannot be reached for this long before giving up with one "
        "line (default 60; also $EMODIST_STORAGE_DEADLINE)")
    for loc in locations if len(locations) > 1 else ():
        add_once(parser, f"--{loc}-storage-options", metavar="JSON",
                 help=f"fsspec options for the {loc} only (override --storage-options)")


#: The variable that carries ``--storage-deadline``: :data:`emodist.store.faults.DEADLINE_ENV`
#: (not imported from there: the store package pulls in xarray, slow to start).
DEADLINE_ENV = "EMODIST_STORAGE_DEADLINE"


def _deadline(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, got {text!r}")
    return value


class StorageDeadline(argparse.Action):
    """``--storage-deadline SECONDS``: sets ``$EMODIST_STORAGE_DEADLINE`` for this process.

    The store handles made by the command read it (and carry it to the
    workers in their tasks), as do the workers of a local cluster it starts.
    """

    def __call__(self, parser, namespace, values, option_string=None):
        os.environ[DEADLINE_ENV] = f"{values:g}"
        setattr(namespace, self.dest, values)


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
    add_scheduler_options(g)
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
          "progress": not getattr(args, "quiet", False),
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


def failure_line(failure: dict) -> str:
    """One failed track as a line naming its file once: ``[TRACK] [GROUP] PATH: reason``.

    The track id is left out when the path holds it (a folder dataset's ids
    are its relative paths); an error that names the path is not prefixed again.
    """
    track, path, error = str(failure["track_id"]), str(failure["path"]), str(failure["error"])
    text = error if path in error else f"{path}: {error}"
    group = f"[{failure['group']}] " if failure.get("group") else ""
    return f"{'' if track in path else f'{track} '}{group}{text}"
