"""``emodist demo-data``: generated Emotify-layout data."""

from __future__ import annotations

import argparse
import sys

from emodist.cli.common import add_command, add_out
from emodist.errors import EmodistError

__all__ = ["EXAMPLES", "cmd_demo_data", "register"]

EXAMPLES = """examples:
  emodist demo-data --out demo/ --tracks 40 --seed 0
  emodist catalog demo/
"""


def register(subparsers) -> None:
    """Add ``demo-data``."""
    p = add_command(
        subparsers, "demo-data",
        help="write a small generated dataset in the Emotify layout",
        description="Write data.csv and emotifymusic/<genre>/<n>.mp3 of generated music whose "
        "emotion classes differ in tempo, mode, loudness, brightness and texture. "
        "Deterministic for a seed.",
        epilog=EXAMPLES,
    )
    add_out(p, help="folder to write")
    # The folder as a positional argument: the old spelling, kept one release.
    p.add_argument("old_out", nargs="?", metavar="OUT", help=argparse.SUPPRESS)
    p.add_argument("--tracks", type=int, default=40, help="number of tracks (default 40)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--duration", type=float, default=30.0, metavar="S",
                   help="track length in seconds (default 30)")
    p.set_defaults(func=cmd_demo_data)


def cmd_demo_data(args) -> int:
    from emodist.data.demo import make_demo_dataset

    if args.old_out:
        if args.out:
            raise EmodistError("give the folder once, as --out", param="out")
        print("emodist: demo-data OUT is deprecated; use demo-data --out OUT", file=sys.stderr)
        args.out = args.old_out
    if not args.out:
        raise EmodistError("give the folder to write", param="out")
    out = make_demo_dataset(args.out, n_tracks=args.tracks, seed=args.seed,
                            duration_s=args.duration)
    print(f"wrote {args.tracks} tracks of {args.duration:g} s to {out}")
    return 0
