"""``emodist catalog`` and ``emodist plan``: what a dataset holds."""

from __future__ import annotations

from emodist.cli.common import (
    add_command,
    add_dataset_options,
    add_out,
    add_segment_options,
    add_storage_options,
    parse_storage_options,
    spec_from_args,
)

__all__ = ["CATALOG_EXAMPLES", "PLAN_EXAMPLES", "catalog_summary", "cmd_catalog", "cmd_plan",
           "load_from_args", "register"]

CATALOG_EXAMPLES = """examples:
  emodist catalog ../shared/data/emotify
  emodist catalog ../shared/data/emotify --label-rule mean
  emodist catalog manifest.csv
  emodist catalog /data/DEAM
  emodist catalog s3://bucket/emotify --storage-options '{"anon": false}'
"""

PLAN_EXAMPLES = """examples:
  emodist plan ../shared/data/emotify
  emodist plan data/ --segment-seconds 10 --hop-seconds 5 --out plan.csv
"""


def register(subparsers) -> None:
    """Add ``catalog`` and ``plan``."""
    _dataset_command(
        subparsers, "catalog", cmd_catalog, CATALOG_EXAMPLES,
        "tracks per class and genre, dropped classes, missing audio",
        "Read a dataset (Emotify, MTG-Jamendo, DEAM or PMEmo folder, manifest CSV or folder "
        "per label) and report its tracks per class, tag and genre, dropped classes, "
        "missing audio and audio without annotations.")
    q = _dataset_command(
        subparsers, "plan", cmd_plan, PLAN_EXAMPLES,
        "the segment plan of a dataset (from file headers)",
        "Plan fixed windows over every usable track from its header and report segment "
        "counts and tracks that gave none.")
    add_segment_options(q)
    add_out(q, metavar="FILE", help="write the plan table to this CSV file", aliases=("--csv",))


def _dataset_command(subparsers, name: str, func, examples: str, help: str, description: str):
    """A sub-command that reads a dataset (DATASET plus the dataset and storage options)."""
    p = add_command(subparsers, name, help=help, description=description, epilog=examples)
    p.add_argument("dataset", help="dataset folder, manifest .csv, or fsspec URL")
    add_dataset_options(p)
    add_storage_options(p, locations=())
    p.set_defaults(func=func)
    return p


def load_from_args(args):
    """The catalog that ``dataset`` + dataset options describe."""
    from emodist.data.catalog import load_dataset

    return load_dataset(
        args.dataset,
        label_rule=args.label_rule,
        min_class_tracks=args.min_class_tracks,
        min_class_share=args.min_class_share,
        storage_options=parse_storage_options(args.storage_options),
    )


def catalog_summary(catalog) -> str:
    """Human-readable report of a catalog."""
    t = catalog.tracks
    usable = catalog.usable()
    lines = [f"dataset: {catalog.description}", f"label rule: {catalog.label_rule}"]
    lines.append(
        f"tracks: {len(t)} in the annotations, {int(t['has_audio'].sum())} with audio, "
        f"{len(catalog.missing_audio)} without, {len(usable)} usable"
    )
    if catalog.missing_audio:
        first = ", ".join(catalog.missing_audio[:8])
        more = " ..." if len(catalog.missing_audio) > 8 else ""
        lines.append(f"without audio (skipped): {first}{more}")
    if catalog.unannotated_audio:
        first = ", ".join(catalog.unannotated_audio[:8])
        more = " ..." if len(catalog.unannotated_audio) > 8 else ""
        lines.append(f"audio without annotations (ignored): {len(catalog.unannotated_audio)}: "
                     f"{first}{more}")
    for column in ("valence", "arousal"):
        if column in usable:
            v = usable[column]
            lines.append(f"{column}: {int(v.notna().sum())} tracks, "
                         f"{v.min():.3g} to {v.max():.3g}, mean {v.mean():.3g}")
    if "tags" in usable:
        lines.append("tracks per tag:")
        for tag, n in usable["tags"].str.split(";").explode().value_counts().items():
            lines.append(f"  {tag or '(none)':<20} {n:>6}")
    if catalog.labelled:
        lines.append("tracks per class:")
        for label, n in catalog.class_counts().items():
            lines.append(f"  {label:<20} {n:>6}")
    if (usable["genre"] != "").any():
        lines.append("tracks per genre:")
        for genre, n in usable["genre"].value_counts().items():
            lines.append(f"  {genre:<20} {n:>6}")
    if catalog.dropped_classes:
        dropped = ", ".join(f"{k} ({v} tracks)" for k, v in catalog.dropped_classes.items())
        lines.append(f"dropped {'classes' if catalog.labelled else 'tags'}: {dropped}")
    return "\n".join(lines)


def cmd_catalog(args) -> int:
    from emodist.data.catalog import group_copies

    catalog = load_from_args(args)
    copies = group_copies(catalog)  # the same audio under several names
    print(catalog_summary(catalog))
    for ids in copies:
        print(f"same audio (byte-identical files), one cross-validation group: {', '.join(ids)}")
    return 0


def cmd_plan(args) -> int:
    from emodist.data.segments import plan_segments
    from emodist.store.outputs import check_file, write_file

    if args.out:  # before the headers are read
        check_file(args.out, param="out")
    catalog = load_from_args(args)
    config = spec_from_args(args)
    plan = plan_segments(catalog, config)
    table = plan.table
    print(f"segments: {len(table)} from {table['track_id'].nunique()} tracks "
          f"({config.segment_seconds:g} s windows, {config.hop_seconds:g} s hop)")
    if catalog.labelled:
        print("segments per class:")
        for label, n in table["label"].value_counts().items():
            print(f"  {label:<20} {n:>6}")
    for track_id, path, msg in plan.problems:
        print(f"no segments: track {track_id} ({path}): {msg}")
    if args.out:
        write_file(args.out, table.to_csv(index=False), param="out")
        print(f"plan written to {args.out}")
    return 0
