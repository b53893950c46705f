"""The command line: sub-commands, one-line errors, exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from emodist.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "emodist", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("catalog", "plan", "demo-data"):
        assert cmd in out


def test_catalog_on_emotify(emotify_root, capsys):
    assert main(["catalog", str(emotify_root)]) == 0
    out = capsys.readouterr().out
    assert "100 with audio, 300 without" in out
    assert "calmness                 36" in out
    assert "dropped classes: amazement" in out


def test_catalog_mean_rule(emotify_root, capsys):
    assert main(["catalog", str(emotify_root), "--label-rule", "mean"]) == 0
    assert "nostalgia                17" in capsys.readouterr().out


def test_plan_cli(emotify_root, capsys, tmp_path):
    out_csv = tmp_path / "plan.csv"
    assert main(["plan", str(emotify_root), "--out", str(out_csv)]) == 0
    assert "segments: 398 from 100 tracks" in capsys.readouterr().out
    assert len(out_csv.read_text().splitlines()) == 399


def test_plan_csv_is_a_deprecated_out(emotify_root, capsys, tmp_path):
    out_csv = tmp_path / "plan.csv"
    assert main(["plan", str(emotify_root), "--csv", str(out_csv)]) == 0
    assert capsys.readouterr().err == "emodist: --csv is deprecated; use --out\n"
    assert len(out_csv.read_text().splitlines()) == 399


def test_demo_data_cli(tmp_path, capsys):
    assert main(["demo-data", "--out", str(tmp_path / "d"), "--tracks", "3", "--duration", "2"]) == 0
    assert (tmp_path / "d" / "data.csv").is_file()
    assert capsys.readouterr().err == ""


def test_demo_data_positional_folder_is_deprecated(tmp_path, capsys):
    assert main(["demo-data", str(tmp_path / "d"), "--tracks", "2", "--duration", "2"]) == 0
    assert (tmp_path / "d" / "data.csv").is_file()
    assert capsys.readouterr().err == ("emodist: demo-data OUT is deprecated; "
                                       "use demo-data --out OUT\n")
    assert main(["demo-data", str(tmp_path / "e"), "--out", str(tmp_path / "f")]) == 2
    assert capsys.readouterr().err.endswith("--out: give the folder once, as --out\n")
    assert main(["demo-data"]) == 2
    assert capsys.readouterr().err == "emodist: error: --out: give the folder to write\n"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["catalog", "/no/such/dataset"], "no such dataset"),
        (["catalog", ".", "--storage-options", "{bad"], "--storage-options"),
        (["extract", ".", "--store", "never.zarr", "--plan-on", "gpu"],
         "argument --plan-on: invalid choice: 'gpu' (choose from 'auto', 'driver', 'workers')"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, needle):
    r = run_cli(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]
    assert "Traceback" not in r.stderr


def test_malformed_csv_cli(tmp_path):
    (tmp_path / "data.csv").write_text("track id, genre\n1, rock\n")
    r = run_cli("catalog", str(tmp_path))
    assert r.returncode == 2
    assert "missing column 'amazement'" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "command",
    [["catalog"], ["plan"], ["demo-data"], ["extract"], ["evaluate"], ["run"], ["demo"],
     ["info"], ["query"], ["similar"], ["model", "build"], ["model", "check"], ["model", "show"],
     ["train"]],
)
def test_every_command_help_has_examples(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([*command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"emodist {' '.join(command)}" in out
