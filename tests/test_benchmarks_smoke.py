"""The benchmark runner, and every benchmark script on tiny inputs.

Each ``benchmarks/bench_*.py`` present is run with ``quick=True`` in its own
process through the runner (exactly as ``python -m benchmarks --quick``
does) and its result must have the documented shape with finite figures.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import pytest

from benchmarks import common
from benchmarks.__main__ import (
    README_END,
    README_START,
    discover,
    fmt,
    main,
    markdown,
    record,
    run_one,
    update_readme,
    validate,
)

BENCHES = discover()
#: Benchmarks that start a moto S3 server (marked ``s3``, like the other tests that need one).
S3_BENCHES = {"headers", "planning"}
#: Benchmarks whose quick run another test module makes through the runner and checks.
RUN_ELSEWHERE = {"sustained": "tests/runtime/test_sustained.py"}


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.s3) if n in S3_BENCHES else n
                                  for n in sorted(BENCHES) if n not in RUN_ELSEWHERE])
def test_benchmark_quick_run_has_the_documented_shape(name):
    outcome = run_one(BENCHES[name], quick=True, timeout=420, capture=True)
    assert outcome["status"] == "ok", f"{outcome['error']}\n{outcome['output'][-2000:]}"
    result = outcome["result"]
    assert validate(result) == []
    assert result["machine"].get("cpu_count")
    for row in result["rows"]:
        assert math.isfinite(row["value"]) and math.isfinite(row["spread"])
        assert row["spread"] >= 0, row


def test_benchmarks_run_elsewhere_are_run_there():
    root = Path(__file__).resolve().parents[1]
    for name, module in RUN_ELSEWHERE.items():
        assert name in BENCHES
        assert f'discover()["{name}"]' in (root / module).read_text(), module


# --- the runner itself, on benchmark scripts written here -----------------

GOOD = '''
from benchmarks.common import machine, row

def run(quick=False):
    n = 3 if quick else 30
    return {"name": "good one", "machine": machine(),
            "rows": [row("items", n, 0.5, "count", "quick" if quick else "full"),
                     row("rate", 1234.5, 10.0, "items/s")],
            "summary": "two rows"}
'''
FAILING = '''
def run(quick=False):
    raise RuntimeError("this benchmark breaks")
'''
NAN = '''
from benchmarks.common import machine, row

def run(quick=False):
    return {"name": "nan", "machine": machine(), "rows": [row("x", float("nan"))],
            "summary": ""}
'''
CRASH = '''
import os

def run(quick=False):
    os._exit(3)
'''


@pytest.fixture
def bench_dir(tmp_path):
    d = tmp_path / "benches"
    d.mkdir()
    for name, text in {"good": GOOD, "failing": FAILING, "nan": NAN, "crash": CRASH}.items():
        (d / f"bench_{name}.py").write_text(text)
    (d / "helper.py").write_text("x = 1\n")  # not a benchmark
    return d


def test_discover_finds_bench_files_only(bench_dir):
    assert list(discover(bench_dir)) == ["crash", "failing", "good", "nan"]
    assert all(p.name.startswith("bench_") for p in discover().values())


def test_validate_reports_shape_problems():
    good = {"name": "n", "machine": {}, "summary": "",
            "rows": [common.row("m", 1.0, 0.1, "s", "")]}
    assert validate(good) == []
    assert validate([]) == ["run() returned list, not dict"]
    assert any("rows" in p for p in validate({**good, "rows": []}))
    bad_row = {**good, "rows": [{"metric": "m", "value": float("inf"), "spread": 0.0}]}
    problems = validate(bad_row)
    assert any("not finite" in p for p in problems) and any("lacks unit, note" in p
                                                            for p in problems)
    assert any("not finite" in p for p in validate({**good, "rows": [
        {**good["rows"][0], "value": "fast"}]}))


def test_main_runs_all_reports_failures_and_writes_results(bench_dir, tmp_path, capsys):
    out = tmp_path / "results"
    code = main(["--quick", "--out", str(out), "--timeout", "120"], bench_dir=bench_dir)
    assert code == 1  # some failed, the others still ran
    docs = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert set(docs) == {"good", "failing", "nan", "crash"}
    good = docs["good"]
    assert good["status"] == "ok" and good["quick"] is True and good["name"] == "good one"
    assert [r["value"] for r in good["rows"]] == [3.0, 1234.5]
    assert good["machine"]["cpu_count"] and "date" in good and "--quick" in good["command"]
    assert "this benchmark breaks" in docs["failing"]["error"]
    assert docs["failing"]["status"] == "failed" and docs["failing"]["rows"] == []
    assert "not finite" in docs["nan"]["error"]
    assert "status 3" in docs["crash"]["error"]
    text = (out / "RESULTS.md").read_text()
    assert "### good one" in text and "| items | 3 | ± 0.5 | count | quick |" in text
    assert "| rate | 1,234 | ± 10 | items/s |  |" in text
    assert "**failed**" in text and "RuntimeError: this benchmark breaks" in text
    assert "python -m benchmarks --quick" in text


def test_only_runs_the_named_benchmarks_and_keeps_others_tables(bench_dir, tmp_path):
    out = tmp_path / "results"
    assert main(["--only", "good", "--out", str(out)], bench_dir=bench_dir) == 0
    first = json.loads((out / "good.json").read_text())
    assert first["quick"] is False and first["rows"][0]["value"] == 30.0
    assert [p.stem for p in out.glob("*.json")] == ["good"]
    # an older record of another benchmark stays in RESULTS.md
    (out / "other.json").write_text(json.dumps(
        {**first, "benchmark": "other", "name": "older one"}))
    assert main(["--only", "good", "--out", str(out)], bench_dir=bench_dir) == 0
    text = (out / "RESULTS.md").read_text()
    assert "### good one" in text and "### older one" in text


def test_unknown_benchmark_is_one_line_and_status_2(bench_dir, capsys):
    assert main(["--only", "nope"], bench_dir=bench_dir) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope" in err and "good" in err


def test_timeout_marks_a_benchmark_failed(tmp_path):
    d = tmp_path / "b"
    d.mkdir()
    (d / "bench_slow.py").write_text("import time\ndef run(quick=False):\n    time.sleep(60)\n")
    outcome = run_one(d / "bench_slow.py", quick=True, timeout=3, capture=True)
    assert outcome["status"] == "failed" and "timed out" in outcome["error"]


def test_readme_section_is_replaced(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nold table\n{README_END}\noutro\n")
    doc = record("good", {"status": "ok", "seconds": 1.0, "error": None,
                          "result": {"name": "g", "machine": {"cpu_count": 2},
                                     "rows": [common.row("m", 2.5, 0.1, "s")], "summary": ""}},
                 quick=False, command="python -m benchmarks", date="2026-01-01 00:00 UTC")
    assert update_readme(readme, markdown([doc]))
    text = readme.read_text()
    assert "old table" not in text and "| m | 2.5 | ± 0.1 | s |" in text
    assert text.startswith("intro\n") and text.endswith(f"{README_END}\noutro\n")
    assert "# emodist benchmark results" not in text
    plain = tmp_path / "plain.md"
    plain.write_text("no markers\n")
    assert not update_readme(plain, "x") and plain.read_text() == "no markers\n"


def test_fmt_and_common_helpers():
    assert fmt(1588.4) == "1,588" and fmt(12.3456) == "12.35" and fmt(0) == "0"
    assert fmt(0.00012) == "1.20e-04"
    calls = []
    median, spread = common.repeat(lambda: calls.append(1), n=3, warmup=2)
    assert len(calls) == 5 and 0 <= median < 0.1 and 0 <= spread < 0.1
    naps = iter([0.0, 0.02, 0.04, 0.06])  # warm-up, then 20, 40 and 60 ms
    median, spread = common.repeat(lambda: time.sleep(next(naps)), n=3, warmup=1)
    assert 0.035 <= median < 0.2 and spread > 0.005
    info = common.machine()
    assert info["cpu_count"] >= 1 and info["libraries"]["numpy"]
    assert common.row("m", 1, unit="s") == {"metric": "m", "value": 1.0, "spread": 0.0,
                                            "unit": "s", "note": ""}


def test_module_entry_point_lists_benchmarks():
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--list"],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True,
                          text=True, check=False, timeout=60)
    assert proc.returncode == 0
    assert BENCHES and proc.stdout.split() == list(BENCHES)


def _report(rows, folds=(0, 1, 0, 1)):
    return {"folds": {"fold": list(folds)},
            "results": [{"features": f, "classifier": c, "balance": b, "params": p,
                         "predictions": pred,
                         "segment": {"accuracy": {"mean": acc}, "balanced_accuracy": {"mean": acc / 2}}}
                        for f, c, b, p, pred, acc in rows]}


def test_evaluate_benchmark_compares_predictions_and_lists_changed_presets():
    from benchmarks.bench_evaluate import changed_table, compare_reports, evaluate_command

    base = _report([("hc", "svm", "none", {"C": 1}, ["a", "b", "a", "b"], 0.5),
                    ("hc", "hgb", "none", {"it": 100}, ["a", "a", "a", "b"], 0.75),
                    ("hc", "knn", "none", {"k": 10}, ["b", "b", "a", "b"], 0.25)])
    new = _report([("hc", "svm", "none", {"C": 1}, ["a", "b", "a", "b"], 0.5),
                   ("hc", "hgb", "none", {"it": 100, "wide": "pca"}, ["a", "b", "a", "b"], 1.0),
                   ("hc", "knn", "none", {"k": 10}, ["b", "a", "a", "b"], 0.5)])
    rows = {r["classifier"]: r for r in compare_reports(base, new)}
    assert rows["svm"]["identical"] and not rows["svm"]["changed"]
    assert rows["hgb"]["changed"] and not rows["hgb"]["identical"]
    assert rows["hgb"]["accuracy"] == (0.75, 1.0) and rows["hgb"]["balanced_accuracy"] == (0.375, 0.5)
    assert not rows["knn"]["changed"] and not rows["knn"]["identical"]
    table = changed_table(list(rows.values())).splitlines()
    assert len(table) == 4 and "| hc | hgb | none | no | 0.750 | 1.000 |" in table[2]
    with pytest.raises(ValueError, match="different folds"):
        compare_reports(base, _report([], folds=(1, 0, 0, 1)))
    cmd = evaluate_command("s.zarr", ["hc", "deep"], ["all"], "out", 2)
    assert cmd[cmd.index("--features") + 1:cmd.index("--classifiers")] == ["hc", "deep"]
    assert cmd[cmd.index("--workers") + 1] == "2" and cmd[-1] == "out"


def test_pipeline_study_manifest_lists_every_track_again_under_new_ids(demo_dataset, tmp_path):
    from benchmarks.bench_pipeline import repeated_manifest
    from emodist.data.catalog import load_dataset
    from emodist.data.segments import plan_segments

    one = load_dataset(str(demo_dataset)).usable()
    path = repeated_manifest(str(demo_dataset), tmp_path / "x3.csv", 3)
    three = load_dataset(path).usable()
    assert len(three) == 3 * len(one) and three["track_id"].is_unique
    assert three["group"].nunique() == 3 * one["group"].nunique()
    assert three["path"].is_unique
    resolved = three["path"].map(lambda p: str(Path(p).resolve()))
    assert sorted(resolved) == sorted([str(Path(p).resolve()) for p in one["path"]] * 3)
    assert three.assign(real=resolved).groupby("real")["label"].nunique().max() == 1
    # each copy is planned as its own track: three times the segments
    assert len(plan_segments(load_dataset(path)).table) == 3 * len(
        plan_segments(load_dataset(str(demo_dataset))).table)


def _stamps(ends, cpu_per_unit=1.0):
    """Stamps [end, cpu, work, worker cpu] of one unit each at the given end times."""
    return [[t, cpu_per_unit * (i + 1), 1, cpu_per_unit * (i + 1)] for i, t in enumerate(ends)]


def test_recognise_steady_rate_of_workers_in_lockstep_is_the_true_rate():
    from benchmarks.bench_recognise import steady, worker_rate

    # two workers finish a chunk every 4 s, 0.01 s apart; 16 chunks: 2 chunks per 4 s
    ends = sorted([4.0 * r + 10.0 for r in range(1, 9)] + [4.0 * r + 10.01 for r in range(1, 9)])
    # both cores busy throughout: 2 CPU-seconds per second
    run = {"parallel": 2, "streams": [[[t, 2 * t, 1, 2 * t, t - 4.0] for t in ends]]}
    wall, cpu = steady(run)
    assert wall == pytest.approx(0.5, rel=0.01)  # the old window (2nd to 15th stamp) gave 13/28
    assert cpu == pytest.approx(0.25, rel=0.01)
    assert worker_rate(run, 1.0) == pytest.approx(0.25, rel=0.01)
    # one worker, one chunk every 3 s after a 20 s start: the rate, start-up left out
    one = {"parallel": 1, "streams": [_stamps([20.0 + 3 * i for i in range(10)], 6.0)]}
    assert steady(one, per_track=0.25) == pytest.approx((0.25 / 3, 0.25 / 6))
    # a process's track began at its previous stamp: the same without starts
    two = {"parallel": 2, "streams": [_stamps([5.0 + 2 * i for i in range(20)], 2.0),
                                      _stamps([6.0 + 2 * i for i in range(20)], 2.0)]}
    assert steady(two) == pytest.approx((1.0, 0.5))


def test_recognise_scaling_is_the_median_pair():
    from benchmarks.bench_recognise import median_spread, scaling_ratios

    # 1 worker: a chunk every 4 s; 2 workers: a chunk every 2.2 s; 0.5 tracks per chunk
    one = {"parallel": 1, "tracks": 5, "wall": 50.0,
           "streams": [_stamps([10.0 + 4 * i for i in range(10)])]}
    two = {"parallel": 2, "tracks": 5, "wall": 25.0,
           "streams": [_stamps([10.0 + 2.2 * i for i in range(10)])]}
    steady_ratio, whole_ratio = scaling_ratios(two, one, 0.5)
    assert steady_ratio == pytest.approx(4 / 2.2)
    assert whole_ratio == pytest.approx(2.0)
    assert median_spread([1.68, 1.88, 1.79]) == pytest.approx((1.79, 0.20))


def test_recognise_steady_rate_needs_enough_stamps():
    from benchmarks.bench_recognise import steady

    with pytest.raises(RuntimeError, match="too few stamps"):
        steady({"parallel": 2, "streams": [_stamps([1.0, 2.0])]})


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity here")
def test_recognise_runs_are_pinned_to_as_many_cores_as_workers():
    import subprocess

    from benchmarks.bench_recognise import pinned

    have = sorted(os.sched_getaffinity(0))
    argv = [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"]
    out = subprocess.run(pinned(argv, 1), capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == have[:1]
    assert pinned(argv, len(have) + 1) == argv


def test_the_musicnn_exploration_rewrites_the_graph_it_claims(tmp_path):
    """``benchmarks/explore_musicnn.py`` on a random-weight MusiCNN: every mel profile kept
    gives the full model's outputs (the factoring is right), fewer do not; quantizing nothing
    changes nothing; the int8 branch graphs run."""
    import numpy as np
    import onnx

    from benchmarks import explore_musicnn as ex
    from emodist.models.musicnn import build_random_model

    model = onnx.load(build_random_model(tmp_path / "m.onnx", seed=1))
    x = np.random.default_rng(0).standard_normal((4, 187, 96)).astype(np.float32)
    want = ex.run(ex.session(model, rewrites=True), x)
    every = ex.run(ex.session(ex.low_rank(model, 67), rewrites=True), x)
    for a, b in zip(every, want):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3 * np.abs(b).max())
    few = ex.run(ex.session(ex.low_rank(model, 2), rewrites=True), x)
    assert not np.allclose(few[1], want[1], rtol=1e-3, atol=1e-3 * np.abs(want[1]).max())
    same = ex.run(ex.session(ex.fake_int8(model, False, None), optimize=False), x)
    for a, b in zip(same, ex.run(ex.session(model, optimize=False), x)):
        np.testing.assert_array_equal(a, b)
    times = ex.branch_times(7, 38)
    assert set(times) == {"fp32_conv_maxpool", "u8_im2col_matmulinteger"}
    assert all(t > 0 for t in times.values())
