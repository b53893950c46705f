"""``emodist verify``: does a store hold what its statuses claim?"""

from __future__ import annotations

from emodist.cli.common import add_command, add_storage_options, parse_storage_options

__all__ = ["DESCRIPTION", "EXAMPLES", "EXIT_DAMAGED", "cmd_verify", "register"]

#: Exit status of a damaged store (2 stays a usage or input error).
EXIT_DAMAGED = 3

DESCRIPTION = """Read every chunk of a feature store and check that every segment marked done
has finite values in every group, every chunk is readable, and the coordinates are
consistent (unique segment index, one value per segment, statuses among the flag values,
every recorded group present).  Each damaged chunk is listed by group and segment range;
`emodist extract ... --repair` recomputes exactly those.  Exit status: 0 sound, 3 damaged,
2 not a store."""

EXAMPLES = """examples:
  emodist verify features.zarr
  emodist verify s3://bucket/features.zarr --storage-options '{"anon": false}'
"""


def register(subparsers) -> None:
    """Add the ``verify`` parser."""
    p = add_command(subparsers, "verify", help="check every chunk of a feature store",
                    description=DESCRIPTION, epilog=EXAMPLES)
    p.add_argument("store", metavar="STORE", help="store path or fsspec URL")
    add_storage_options(p, locations=())
    p.set_defaults(func=cmd_verify)


def cmd_verify(args) -> int:
    """Run ``emodist verify``: one line per problem, then a summary."""
    from emodist.store.verify import verify_store

    report = verify_store(args.store, parse_storage_options(args.storage_options))
    for d in report.damage:
        print(f"damaged: {d.message}")
    if report.ok:
        print(report.summary())
        return 0
    hint = ("rerun `emodist extract ... --repair` to recompute them" if report.repairable
            else "rebuild it with `emodist extract ... --overwrite`")
    print(f"{args.store}: {len(report.damage)} problems in {report.n_chunks} chunks read; {hint}")
    return EXIT_DAMAGED
