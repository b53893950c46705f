"""One command-line vocabulary: every sub-command of the real parser, walked.

The same idea has the same flag in every command; old spellings are hidden
aliases that still work and say so on stderr; ``choices`` are the library's
constants; ``run`` takes every option of ``evaluate``; each example of an
epilog prints on its own line (``docs/reference/cli-vocabulary.md``).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from emodist.cli import build_parser
from emodist.cli import model as model_cli
from emodist.cli import query as query_cli
from emodist.features.handcrafted.names import FEATURE_SETS
from emodist.features.inception import IMAGE_SCALES
from emodist.features.musicnn import DEFAULT_OUTPUTS
from emodist.learn.data import CONTEXTS
from emodist.learn.dataset_targets import ANNOTATIONS
from emodist.learn.spec import BALANCES, EVALUATION_TARGETS, RANK_BY, TARGETS
from emodist.spec import LABEL_RULES, PLAN_SITES
from emodist.store.select import EMOTION_LEVELS
from emodist.store.similar import METRICS


def walk(parser, path=()):
    """(command words, parser) of every sub-command and sub-sub-command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from walk(sub, (*path, name))


PARSER = build_parser()
COMMANDS = dict(walk(PARSER))
IDS = [" ".join(c) for c in COMMANDS]


def options(parser, hidden: bool = False):
    """The optional arguments of a parser: the visible ones, or the hidden ones."""
    return [a for a in parser._actions if a.option_strings
            and (a.help == argparse.SUPPRESS) == hidden]


#: Idea (the destination of an option) -> its one flag in every command.
IDEAS = {
    "out": "--out", "quiet": "--quiet", "workers": "--workers", "features": "--features",
    "columns": "--columns", "scheduler": "--scheduler", "scheduler_file": "--scheduler-file",
    "storage_options": "--storage-options", "overwrite": "--overwrite", "seed": "--seed",
    "label_rule": "--label-rule", "storage_deadline": "--storage-deadline",
}
#: Spellings no command shows any more.
RETIRED = {"--jobs", "--no-progress", "--output", "-o", "--csv", "--force",
           "--evaluate-features"}
#: Destination -> the library constant its choices are (a new hard-coded tuple fails).
CHOICES = {
    "label_rule": LABEL_RULES, "feature_set": FEATURE_SETS, "image_scale": IMAGE_SCALES,
    "musicnn_outputs": DEFAULT_OUTPUTS, "plan_on": PLAN_SITES, "balance": BALANCES,
    "target": EVALUATION_TARGETS, "rank_by": RANK_BY, "metric": METRICS, "level": EMOTION_LEVELS, "format": query_cli.FORMATS,
    "what": model_cli.TARGETS, "quantize": model_cli.QUANTIZE, "context": CONTEXTS,
    "annotations": ANNOTATIONS,
}
#: Hidden alias -> (command, a line using it, the same line without it, the destination,
#: the value the alias sets, the flag that replaces it).
ALIASES = {
    "--no-progress": (("extract",), ["extract", "d", "--store", "s", "--no-progress"],
                      ["extract", "d", "--store", "s"], "quiet", True, "--quiet"),
    "--jobs": (("evaluate",), ["evaluate", "s", "--jobs", "2"], ["evaluate", "s"], "workers", 2,
               "--workers"),
    "--csv": (("plan",), ["plan", "d", "--csv", "p.csv"], ["plan", "d"], "out", "p.csv", "--out"),
    "--output": (("query",), ["query", "s", "--output", "q.csv"], ["query", "s"], "out", "q.csv",
                 "--out"),
    "--by": (("similar",), ["similar", "s", "--track", "1", "--by", "musicnn_msd"],
             ["similar", "s", "--track", "1"], "features", ["musicnn_msd"], "--features"),
    "-o": (("similar",), ["similar", "s", "--segment", "1:000", "-o", "q.csv"],
           ["similar", "s", "--segment", "1:000"], "out", "q.csv", "--out"),
    "--model": (("model", "build"), ["model", "build", "--model", "m.onnx"], ["model", "build"],
                "out", "m.onnx", "--out"),
    "--force": (("model", "build"), ["model", "build", "--force"], ["model", "build"],
                "overwrite", True, "--overwrite"),
    "--evaluate-features": (("run",), ["run", "d", "--store", "s", "--evaluate-features", "a+b"],
                            ["run", "d", "--store", "s"], "evaluate_features", ["a+b"],
                            "--features"),
}


def test_the_walk_reaches_every_command():
    assert {"extract", "evaluate", "run", "query", "similar", "plan", "demo-data"} <= {
        c[0] for c in COMMANDS}
    assert ("model", "build") in COMMANDS and ("model", "check") in COMMANDS


@pytest.mark.parametrize("command", list(COMMANDS), ids=IDS)
def test_one_flag_per_idea(command):
    for action in options(COMMANDS[command]):
        if action.dest in IDEAS:
            assert action.option_strings == [IDEAS[action.dest]], (command, action.dest)
        for flag in action.option_strings:
            assert flag not in RETIRED, (command, flag)
            if flag in IDEAS.values():
                assert IDEAS.get(action.dest) == flag, (command, flag, action.dest)


def test_a_destination_has_one_flag_in_every_command():
    flags: dict[str, set] = {}
    for parser in [PARSER, *COMMANDS.values()]:
        for action in options(parser):
            flags.setdefault(action.dest, set()).add(tuple(action.option_strings))
    several = {dest: spellings for dest, spellings in flags.items() if len(spellings) > 1}
    assert several == {}


@pytest.mark.parametrize("command", list(COMMANDS), ids=IDS)
def test_every_visible_option_has_help(command):
    for action in COMMANDS[command]._actions:
        if action.help != argparse.SUPPRESS and not isinstance(action,
                                                                argparse._SubParsersAction):
            assert action.help and action.help.strip(), (command, action.dest)


#: Commands whose option takes a narrower constant than the same option elsewhere:
#: train fits one class per segment, a factor or the distribution (not shares or tags).
OWN_CHOICES = {("train",): {"target": TARGETS}}


@pytest.mark.parametrize("command", list(COMMANDS), ids=IDS)
def test_choices_are_the_library_constants(command):
    for action in COMMANDS[command]._actions:
        if action.choices is None or isinstance(action, argparse._SubParsersAction):
            continue
        known = {**CHOICES, **OWN_CHOICES.get(command, {})}
        assert action.dest in known, (command, action.dest, "choices from no known constant")
        constant = tuple(known[action.dest])
        choices = tuple(action.choices)
        # model check takes every target but 'all'
        assert choices == constant or (command == ("model", "check") and
                                       choices == constant[:-1]), (command, action.dest)


def test_run_has_every_option_of_evaluate():
    run = {s for a in COMMANDS[("run",)]._actions for s in a.option_strings}
    evaluate = {s for a in COMMANDS[("evaluate",)]._actions for s in a.option_strings}
    # scoring a trained model on another store (--model, --map) extracts nothing: evaluate's alone
    # (on run, --model is the extraction's ONNX model)
    assert evaluate - run == {"--map"}
    positionals = [a.dest for a in COMMANDS[("evaluate",)]._actions if not a.option_strings]
    assert positionals == ["store"]


def test_run_and_extract_share_the_extraction_options():
    run = {s for a in COMMANDS[("run",)]._actions for s in a.option_strings}
    extract = {s for a in COMMANDS[("extract",)]._actions for s in a.option_strings}
    assert extract <= run


@pytest.mark.parametrize("alias", list(ALIASES))
def test_a_deprecated_alias_is_hidden_and_says_so(alias, capsys):
    command, argv, _, dest, value, new = ALIASES[alias]
    parser = COMMANDS[command]
    assert alias in {s for a in options(parser, hidden=True) for s in a.option_strings}
    assert not re.search(rf"(?<![\w-]){re.escape(alias)}(?![\w-])", parser.format_help())
    assert getattr(PARSER.parse_args(argv), dest) == value
    assert capsys.readouterr().err == f"emodist: {alias} is deprecated; use {new}\n"


@pytest.mark.parametrize("alias", list(ALIASES))
def test_without_the_alias_the_default_stands(alias, capsys):
    _, _, argv, dest, value, _ = ALIASES[alias]
    assert getattr(PARSER.parse_args(argv), dest, None) != value
    assert capsys.readouterr().err == ""


def rendered_examples(command) -> list[str]:
    """The lines after ``examples:`` in a command's rendered ``--help``."""
    text = (COMMANDS[command] if command else PARSER).format_help()
    if "examples:" not in text:
        return []
    return text.split("examples:", 1)[1].splitlines()[1:]


@pytest.mark.parametrize("command", [(), *COMMANDS], ids=["emodist", *IDS])
def test_each_example_prints_on_its_own_line(command):
    lines = rendered_examples(command)
    if command == ("model",):  # its actions have the examples
        return
    assert lines, f"{command}: no examples"
    previous = ""
    for line in lines:
        if not line.strip():
            previous = ""
            continue
        code = line.split(" # ", 1)[0]
        if line.startswith("  emodist "):
            assert code.count("emodist ") == 1, line
        elif line.startswith("      "):
            assert previous.rstrip().endswith("\\"), f"a continuation without a backslash: {line}"
        else:
            break  # prose after the examples (the top-level vocabulary note)
        # a lone backslash in the source joins two lines into one: a long gap, then a flag
        assert not re.search(r"\S {4,}--", code), f"two lines printed as one: {line}"
        previous = line


def test_the_vocabulary_page_lists_every_idea():
    page = Path(__file__).resolve().parents[2] / "docs" / "reference" / "cli-vocabulary.md"
    text = page.read_text(encoding="utf-8")
    for flag in IDEAS.values():
        assert f"`{flag}`" in text, flag
    for alias in ALIASES:
        assert f"`{alias}`" in text, alias
