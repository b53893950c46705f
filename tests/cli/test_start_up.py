"""A command line builds only its own sub-command's parser, so ``emodist predict`` starts light."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from emodist.cli import COMMAND_MODULES, COMMANDS, _command_module, build_parser, main


def test_every_command_is_mapped_to_the_module_that_registers_it():
    registered = {}
    for name in COMMAND_MODULES:
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(f"emodist.cli.{name}").register(sub)
        registered.update(dict.fromkeys(sub.choices, name))
    assert registered == COMMANDS


@pytest.mark.parametrize("argv, modules", [
    (["predict", "song.mp3", "--model", "m"], ("predict",)),
    (["--debug", "similar", "s.zarr", "--track", "1"], ("query",)),
    (["no-such-command"], COMMAND_MODULES),
    (["--help"], COMMAND_MODULES),
    ([], COMMAND_MODULES),
])
def test_the_modules_a_command_line_needs(argv, modules):
    assert _command_module(argv) == modules


def test_one_command_parses_as_with_every_command():
    argv = ["predict", "song.mp3", "--model", "m", "--top", "3"]
    alone = build_parser(_command_module(argv)).parse_args(argv)
    assert vars(alone) == vars(build_parser().parse_args(argv))


def test_an_unknown_command_still_gets_the_full_usage_line(capsys):
    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err and "predict" in err and "evaluate" in err


def test_predict_loads_neither_scikit_learn_nor_dask():
    """What ``emodist predict FILE --model M`` imports before its work: no learning, no cluster."""
    code = ("import sys; import emodist.cli as c; "
            "c.build_parser(c._command_module(['predict', 'f.mp3', '--model', 'm'])); "
            "import emodist.cli.predict, emodist.engine.predict, emodist.models.trained; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'sklearn', 'dask', 'distributed', 'zarr', 'matplotlib'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300).stdout
    assert out.strip() == "[]"


def test_predict_here_skips_the_cluster_log_set_up_and_with_a_store_does_not(tmp_path):
    """Without --store, ``emodist predict`` runs in its own process: its log does not import
    ``distributed`` (half a second) to catch workers' output; with --store it does."""
    code = ("import sys; import emodist.cli as c; argv = sys.argv[1:]; "
            "args = c.build_parser(c._command_module(argv)).parse_args(argv)\n"
            "with c.command_log(args, argv): pass\n"
            "print(c.uses_cluster(args), 'distributed' in sys.modules)")
    log = str(tmp_path / "run.log")
    here = ["predict", "f.mp3", "--model", "m", "--log", log]
    for argv, expected in ((here, "False False"), (here + ["--store", "s.zarr"], "True True"),
                           (here + ["--scheduler", "tcp://127.0.0.1:1"], "False False")):
        out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                             check=True, timeout=300).stdout
        assert out.strip() == expected, argv
