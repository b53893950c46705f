"""``emodist compare``: several evaluation reports side by side."""

from __future__ import annotations

from emodist.cli.common import add_command

__all__ = ["COMPARE_DESCRIPTION", "COMPARE_EXAMPLES", "cmd_compare", "register"]

COMPARE_DESCRIPTION = """Lay evaluation reports side by side in one Markdown table: the reference
study's figures, each report's chance and majority rates, human ceiling, and best accuracy,
balanced accuracy, macro-F1 and track-level accuracy per feature set (mean ± fold std)."""

COMPARE_EXAMPLES = """examples:
  emodist compare report/ factors/ dist/
  emodist compare report/report.json other/report.json --out comparison.md
"""


def register(subparsers) -> None:
    """Add ``compare``."""
    p = add_command(subparsers, "compare", help="evaluation reports side by side",
                    description=COMPARE_DESCRIPTION, epilog=COMPARE_EXAMPLES)
    p.add_argument("reports", nargs="+", metavar="REPORT", help="report.json files or report folders")
    p.add_argument("--out", metavar="FILE", help="also write the table to this Markdown file")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args) -> int:
    """Run ``emodist compare``."""
    from emodist.learn.report import comparison_markdown, load_report
    from emodist.store.outputs import check_file, write_file

    if args.out:  # before the reports are read
        check_file(args.out)
    pairs = [(str(path), load_report(path)) for path in args.reports]
    text = comparison_markdown(pairs)
    print(text, end="")
    if args.out:
        write_file(args.out, text)
    return 0
