"""The terminal gets one line per problem; workers' tracebacks and decoder notes go to a log.

``emodist extract`` runs in a subprocess, as a user runs it, on a LocalCluster
of worker processes: the lines that reach its standard error are those of
the user's terminal.  Worker tracebacks (a Ctrl-C reaches every process of
the group) and libmpg123's notes are written by other processes and by C
code, to file descriptor 2: they must land in the log file the error line
names, not on the terminal.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from emodist.cli.runlog import default_log_path
from tests.servers import sigint_as_in_a_terminal

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(REPO))


@pytest.fixture(scope="module")
def tracks(demo_data) -> Path:
    """A generated Emotify-layout dataset: 12 tracks of 8 s."""
    return demo_data(12, 3, 8.0)


def extract_cmd(dataset: Path, store: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "emodist", "extract", str(dataset), "--store", str(store),
            "--features", "handcrafted", "--segment-seconds", "4", "--chunk-segments", "1",
            "--workers", "1", "--threads-per-worker", "1", "--quiet", *extra]


def test_bad_files_one_line_each_and_decoder_notes_in_the_log(tracks, tmp_path):
    """An empty ``.mp3``, a text file named ``.mp3`` and a truncated MP3: one true line each.

    The truncated file's header promises 8 s; none of its segments is
    computed from the fraction of a second it holds.  libmpg123's notes go
    to the log.
    """
    import shutil

    import zarr

    data = tmp_path / "dataset"
    shutil.copytree(tracks, data)
    empty, text, cut = sorted((data / "emotifymusic").rglob("*.mp3"))[:3]
    empty.write_bytes(b"")
    text.write_text("this is not audio\n" * 40)
    cut.write_bytes(cut.read_bytes()[:3000])
    store = tmp_path / "s.zarr"
    proc = subprocess.run(extract_cmd(data, store), capture_output=True, text=True, env=ENV,
                          check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    failures = [line.strip() for line in proc.stdout.splitlines() if line.startswith("  ")]
    by_file = {Path(line.split(": ", 1)[0].split()[-1]).resolve(): line for line in failures}
    assert set(by_file) == {empty.resolve(), text.resolve(), cut.resolve()}, failures
    assert by_file[empty.resolve()].endswith(": empty file (0 bytes)"), failures
    assert by_file[text.resolve()].endswith(": not audio (format not recognised)"), failures
    assert re.search(r": truncated audio: it ends at [0-3]\.\d{3} s, sooner than its header "
                     r"says \(the segments past that are not computed\)$",
                     by_file[cut.resolve()]), failures
    for path, line in by_file.items():
        assert line.count(path.name) == 1 and "possibly a pipe" not in line, line
    g = zarr.open_group(str(store), mode="r")
    paths = [str(p) for p in np.asarray(g["path"][...])]
    status = np.asarray(g["handcrafted_status"][...])
    assert (status[[Path(p).resolve() == cut.resolve() for p in paths]] == -1).all()
    assert (status[[Path(p).resolve() != cut.resolve() for p in paths]] == 1).all()
    # the terminal: one line naming the log; the decoder's notes are in the log, not here
    log = Path(default_log_path("extract", str(store)))
    assert proc.stderr.splitlines() == [f"emodist: worker and decoder messages are in {log}"]
    assert log == tmp_path / "s.zarr.log"
    assert "Illegal Audio-MPEG-Header" in log.read_text()


def test_ctrl_c_is_one_line_saying_what_is_kept(tracks, tmp_path):
    """SIGINT to the process group a few chunks into a run: one line, tracebacks in the log.

    The rerun resumes from what the line says is kept.
    """
    store = tmp_path / "s.zarr"
    log = tmp_path / "run.log"
    with sigint_as_in_a_terminal():
        proc = subprocess.Popen(extract_cmd(tracks, store, "--log", str(log)),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=ENV, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not (store / "handcrafted" / "c" / "1").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == 130, (proc.returncode, err[-3000:], _out[-2000:])
    lines = err.splitlines()
    assert len(lines) == 1, err[-3000:]
    m = re.fullmatch(r"emodist: interrupted: (\d+) of (\d+) chunks of (\S+) are written and "
                     r"kept; rerun the same command to resume \(details in (\S+)\)", lines[0])
    assert m, lines[0]
    kept, total = int(m[1]), int(m[2])
    assert 0 < kept < total == 24, lines[0]  # 24 segments of 4 s, in chunks of 1
    assert Path(m[3]) == store and Path(m[4]) == log
    held = log.read_text()
    assert "Traceback (most recent call last)" in held and "Traceback" not in err
    rerun = subprocess.run(extract_cmd(tracks, store, "--log", str(log)), capture_output=True,
                           text=True, env=ENV, timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resumed" in rerun.stdout and "24 of 24 segments done" in rerun.stdout, rerun.stdout
    assert rerun.stderr == ""
    assert log.read_text() == held  # a run that wrote nothing there leaves the log as it was


def test_log_option_before_and_after_the_command():
    """``--log`` is one option: before the command, and after it for cluster commands."""
    from emodist.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["--log", "a.log", "verify", "s.zarr"]).log == "a.log"
    args = parser.parse_args(["--log", "a.log", "extract", "d", "--store", "s", "--log", "b.log"])
    assert args.log == "b.log"
    assert parser.parse_args(["extract", "d", "--store", "s"]).log is None


def _in_run_log(path: Path, body: str) -> subprocess.CompletedProcess:
    code = ("import os, sys\nfrom emodist.cli.runlog import run_log\n"
            f"with run_log({str(path)!r}, title='emodist test') as log:\n{body}")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV,
                          check=False, timeout=60)


def test_descriptor_two_goes_to_the_log_and_sys_stderr_to_the_terminal(tmp_path):
    """What C code writes (descriptor 2) lands in the log; ``sys.stderr`` stays the terminal."""
    log = tmp_path / "x.log"
    got = _in_run_log(log, "    os.write(2, b'Note: from C\\n')\n"
                           "    print('one line', file=sys.stderr)\n"
                           "    print(log.mention(), file=sys.stderr)\n")
    assert got.returncode == 0, got.stderr
    assert got.stderr.splitlines() == ["one line", f" (details in {log})"]
    first = log.read_text()
    assert first.startswith("--- emodist test at ") and first.endswith("Note: from C\n")
    # a command that writes nothing there takes its header out again
    quiet = _in_run_log(log, "    print(repr(log.mention()), file=sys.stderr)\n")
    assert quiet.stderr.splitlines() == ["''"] and log.read_text() == first
    # and with nothing before it, the file goes
    empty = tmp_path / "y.log"
    assert _in_run_log(empty, "    pass\n").returncode == 0 and not empty.exists()
