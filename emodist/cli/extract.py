"""``emodist`` sub-commands of this group (being written)."""


def register(subparsers) -> None:
    """Add this group's parsers (none yet)."""
