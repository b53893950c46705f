"""The ``emodist`` command line.

Each sub-module of :mod:`emodist.cli` owns one group of sub-commands and
exposes ``register(subparsers)``, which adds its parsers and sets
``func=callable(args) -> int | None`` on each.  :func:`main` turns every
:class:`emodist.errors.EmodistError` into one line on stderr and exit status
2; ``--debug`` shows the traceback instead.  What workers and C libraries
write while a command runs goes to its log file (``--log``,
:mod:`emodist.cli.runlog`), which the error line names when it holds
something; ``--debug`` leaves it on the terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import warnings

from emodist._version import __version__
from emodist.cli.common import add_log
from emodist.cli.runlog import RunLog, default_log_path, run_log
from emodist.errors import EmodistError

__all__ = ["COMMANDS", "COMMAND_MODULES", "EPILOG", "FLAG_NAMES", "build_parser", "command_log",
           "describe_error", "flag_name", "log_to_stderr", "main", "run", "uses_cluster"]

#: Sub-modules that register commands, in the order shown by ``--help``.
COMMAND_MODULES = ("catalog", "demo", "extract", "verify", "evaluate", "compare", "pipeline",
                   "query", "model", "train", "predict")

#: The module of :data:`COMMAND_MODULES` that registers each sub-command.  A command line
#: that names one builds its parser alone: the other modules pull in scikit-learn and
#: the feature registry, seconds of start-up for ``emodist predict song.mp3``.
COMMANDS = {"catalog": "catalog", "plan": "catalog", "demo-data": "demo", "extract": "extract",
            "verify": "verify", "evaluate": "evaluate", "compare": "compare", "run": "pipeline",
            "demo": "pipeline", "info": "query", "query": "query", "similar": "query",
            "model": "model", "train": "train", "predict": "predict"}

EPILOG = """examples:
  emodist demo                                   # whole job on generated data
  emodist catalog ../shared/data/emotify         # what a dataset holds
  emodist extract DATA --store features.zarr     # features into a Zarr store
  emodist evaluate features.zarr --out report/   # grouped cross-validation
  emodist info features.zarr                     # what a store holds
  emodist train features.zarr --features handcrafted+musicnn_msd \\
      --classifier soft-logistic-regression --out models/emotion/
  emodist predict song.mp3 --model models/emotion/ # recognise new music

The same flag means the same thing in every command: --out (where results go),
--quiet, --workers, --features (feature groups, a+b joined), --columns (feature
names or patterns), --seed, --overwrite, --scheduler, --storage-options.
"""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors exit 2 with one line."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(modules=COMMAND_MODULES) -> argparse.ArgumentParser:
    """The parser with the sub-commands of ``modules`` (default: every one)."""
    parser = _Parser(
        prog="emodist",
        description="Distributed feature extraction and evaluation for music emotion recognition.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"emodist {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks on errors, and worker messages on the terminal")
    add_log(parser, default=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in modules:
        module = importlib.import_module(f"emodist.cli.{name}")
        module.register(sub)
    return parser


#: Flags whose name is not the parameter's (``n_workers`` is set by ``--workers``).
FLAG_NAMES = {"n_workers": "--workers", "n_jobs": "--workers", "block_bytes": "--block-mib",
              "progress": "--quiet", "fold_source": "--folds"}


def flag_name(param: str, overrides: dict | None = None) -> str:
    """The command-line flag of a library parameter (``n_jobs`` -> ``--workers``).

    Parameters
    ----------
    param : str
        The parameter's name, as in :attr:`emodist.errors.EmodistError.param`.
    overrides : dict, optional
        A command's own flags for some parameters (they win over :data:`FLAG_NAMES`).
    """
    names = {**FLAG_NAMES, **(overrides or {})}
    return names.get(param, f"--{param.replace('_', '-')}")


def describe_error(exc: EmodistError) -> str:
    """The one-line message of an error, led by the flag of the parameter at fault."""
    if exc.param:
        return f"{flag_name(exc.param)}: {exc.message}"
    return exc.message


@contextlib.contextmanager
def log_to_stderr(args):
    """emodist's log lines (resuming, dashboard...) on stderr while a command runs.

    Quiet commands (``--quiet``) show warnings only.
    """
    quiet = getattr(args, "quiet", False)
    logger = logging.getLogger("emodist")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


def _command_module(argv: list[str]) -> tuple[str, ...]:
    """The modules whose parsers a command line needs: its sub-command's, else every one."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return (COMMANDS[first],) if first in COMMANDS else COMMAND_MODULES


def uses_cluster(args) -> bool:
    """Whether a command may start or reach a Dask cluster (its workers' logs matter).

    A command whose cluster options apply only to some of its invocations
    says which with ``set_defaults(cluster_if=...)``, a predicate of its
    arguments (``emodist predict`` without ``--store`` answers in its own
    process, and skips ``distributed``'s import: half a second of start-up).
    """
    decide = getattr(args, "cluster_if", None)
    if decide is not None:
        return bool(decide(args))
    return (hasattr(args, "threads_per_worker") or bool(getattr(args, "scheduler", None))
            or bool(getattr(args, "scheduler_file", None)))


def command_log(args, argv: list[str] | None = None) -> contextlib.AbstractContextManager:
    """The log of a command (:func:`emodist.cli.runlog.run_log`); none under ``--debug``."""
    if args.debug:
        return contextlib.nullcontext(None)
    path = args.log or default_log_path(args.command, getattr(args, "store", None))
    title = " ".join(["emodist", *(sys.argv[1:] if argv is None else argv)])
    return run_log(path, cluster=uses_cluster(args), title=title)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``emodist`` console script."""
    parser = build_parser(_command_module(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    with _library_deprecations_hidden(not args.debug), command_log(args, argv) as log:
        code = _run_command(args, log)
        if code == 0 and log is not None and log.holds_something():
            print(f"emodist: worker and decoder messages are in {log.path}", file=sys.stderr)
        return code


@contextlib.contextmanager
def _library_deprecations_hidden(hide: bool):
    """Libraries' deprecation notes off the terminal, here and in the workers this command starts.

    They speak to the developers of the code calling those libraries, not to
    the user of a command (``--debug`` shows them); emodist raises none of
    its own.  A ``PYTHONWARNINGS`` the user set is kept.
    """
    if not hide:
        yield
        return
    before = os.environ.get("PYTHONWARNINGS")
    if before is None:
        os.environ["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        if before is None:
            os.environ.pop("PYTHONWARNINGS", None)


def _mention(log: RunLog | None) -> str:
    return log.mention() if log is not None else ""


def _run_command(args, log: RunLog | None) -> int:
    try:
        with log_to_stderr(args):
            code = args.func(args)
    except EmodistError as exc:
        if args.debug:
            raise
        print(f"emodist: error: {describe_error(exc)}{_mention(log)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        # a command that knows what it kept says so in the interrupt's text
        what = str(exc) or "rerun the same command to resume"
        print(f"emodist: interrupted: {what}{_mention(log)}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head & co.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # a bug or an unforeseen environment problem
        if args.debug:
            raise
        text = str(exc).strip().splitlines()
        detail = text[0] if text else ""
        print(
            f"emodist: unexpected {type(exc).__name__}: {detail} (rerun with --debug for the "
            f"traceback){_mention(log)}",
            file=sys.stderr,
        )
        return 1
    return int(code or 0)


def run() -> None:  # pragma: no cover - console script wrapper
    sys.exit(main())
