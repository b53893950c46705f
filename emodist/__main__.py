"""``python -m emodist`` runs the command line."""

from emodist.cli import run

run()
