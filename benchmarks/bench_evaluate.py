"""The evaluation side by side with a baseline commit: wall time, speed-up, identical predictions.

One ``emodist evaluate`` of the same store, feature sets, presets, balance
modes, folds and seed, run by the baseline (a git commit checked out in a
temporary worktree, run in its own process with its own ``PYTHONPATH``) and
by this tree, one after the other.  Reported:

- seconds of the fits of each side (the report's ``seconds``: from the
  first fit to the last, the store already loaded) and the wall time of
  each process, and the speed-up (baseline seconds / current seconds);
- per (feature set, preset, balance): whether the out-of-fold predictions
  of every segment are identical; a preset whose definition changed (its
  ``params`` differ between the two reports) is listed with its segment
  accuracy and balanced accuracy (fold means) before and after; a preset
  whose definition did not change must predict identically;
- the fit seconds of ``--classifiers quick`` on the same feature sets.

Settings (environment):

- ``EMODIST_EVAL_STORE``: the feature store (the shared data store; required
  for the full run).
- ``EMODIST_BENCH_BASELINE``: baseline commit (default ``f4c242e``, the
  branch point of the faster evaluation; ``HEAD`` in the quick run).
- ``EMODIST_BENCH_BASELINE_REPORT``: a ``report.json`` the baseline wrote
  earlier for the same command on the same machine; used instead of running
  the baseline again (its wall time is then unknown: the fit seconds are
  compared).
- ``EMODIST_EVAL_FEATURES``, ``EMODIST_EVAL_JOBS``: feature sets (default
  ``handcrafted inception_v3 handcrafted+inception_v3``) and processes
  (default 2).

``quick=True``: a generated 40-track store (10 + 6 columns), two presets,
both balance modes, one process, baseline ``HEAD``.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, row

ROOT = Path(__file__).resolve().parents[1]
#: Today's main before the faster evaluation.
DEFAULT_BASELINE = "f4c242e"
DEFAULT_FEATURES = "handcrafted inception_v3 handcrafted+inception_v3"


def evaluate_command(store: str, features: list[str], classifiers: list[str], out: str,
                     jobs: int, balance: str = "both") -> list[str]:
    """Arguments of one ``emodist evaluate`` run, the same for both sides.

    Parameters
    ----------
    store : str
        Feature store.
    features, classifiers : list of str
        Feature sets and presets.
    out : str
        Report folder.
    jobs : int
        Local processes.
    balance : str
        Balance modes.

    Returns
    -------
    list of str
        The command, starting with this Python.
    """
    return [sys.executable, "-c", "from emodist.cli import run; run()", "evaluate", store,
            "--features", *features, "--classifiers", *classifiers, "--balance", balance,
            "--folds", "5", "--seed", "0", "--workers", str(jobs), "--ceiling", "none", "--quiet",
            "--out", out]


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_evaluation(tree: Path, command: list[str]) -> tuple[dict, float, float]:
    """Run ``command`` with ``tree``'s package first on the path.

    Returns
    -------
    report : dict
        The run's ``report.json``.
    wall, cpu : float
        Wall seconds of the process, and the CPU seconds (user + system) of
        it and of its worker processes.
    """
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    t0, c0 = time.perf_counter(), _children_cpu()
    done = subprocess.run(command, check=False, cwd=tree, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
    if done.returncode != 0:
        raise RuntimeError(f"evaluate failed in {tree}: {done.stderr[-2000:]}")
    out = Path(command[command.index("--out") + 1])
    return json.loads((out / "report.json").read_text()), wall, cpu


def checkout(commit: str, where: Path) -> Path:
    """``commit`` of this repository checked out (detached) in a new worktree at ``where``."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), commit],
                   check=True, capture_output=True, text=True)
    return where


def remove_checkout(where: Path) -> None:
    """Remove a worktree made by :func:`checkout`."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)],
                   check=False, capture_output=True, text=True)


def _metric(result: dict, name: str) -> float:
    return float(result["segment"][name]["mean"])


def compare_reports(base: dict, new: dict) -> list[dict]:
    """Per (feature set, preset, balance) of both reports: identical predictions, accuracies.

    Parameters
    ----------
    base, new : dict
        Evaluation reports (``report.json``) of the same store, folds and
        seed.

    Returns
    -------
    list of dict
        ``features``, ``classifier``, ``balance``, ``changed`` (the preset's
        ``params`` differ), ``identical`` (every prediction equal),
        ``accuracy`` and ``balanced_accuracy`` as ``(before, after)``; in
        the baseline's order.
    """
    if base["folds"]["fold"] != new["folds"]["fold"]:
        raise ValueError("the two reports have different folds")
    after = {(r["features"], r["classifier"], r["balance"]): r for r in new["results"]}
    rows = []
    for b in base["results"]:
        key = (b["features"], b["classifier"], b["balance"])
        a = after.get(key)
        if a is None:
            continue
        rows.append({"features": key[0], "classifier": key[1], "balance": key[2],
                     "changed": b["params"] != a["params"],
                     "identical": b["predictions"] == a["predictions"],
                     **{m: (_metric(b, m), _metric(a, m)) for m in ("accuracy", "balanced_accuracy")}})
    return rows


def changed_table(rows: list[dict]) -> str:
    """Markdown table of the rows whose preset changed or whose predictions differ."""
    head = ("| features | preset | balance | identical | accuracy before | after "
            "| balanced acc. before | after |")
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["changed"] or not r["identical"]:
            (a0, a1), (b0, b1) = r["accuracy"], r["balanced_accuracy"]
            lines.append(f"| {r['features']} | {r['classifier']} | {r['balance']} | "
                         f"{'yes' if r['identical'] else 'no'} | {a0:.3f} | {a1:.3f} | "
                         f"{b0:.3f} | {b1:.3f} |")
    return "\n".join(lines)


def _quick_store(where: Path) -> str:
    sys.path.insert(0, str(ROOT))
    from tests.stores import make_store

    return make_store(where / "quick.zarr", n_tracks=40)


def run(quick: bool = False) -> dict:
    """Baseline and current evaluation of one store, side by side (module docstring)."""
    features = DEFAULT_FEATURES.split() if not quick else ["handcrafted", "inception_v3"]
    features = os.environ.get("EMODIST_EVAL_FEATURES", " ".join(features)).split()
    jobs = int(os.environ.get("EMODIST_EVAL_JOBS", "1" if quick else "2"))
    commit = os.environ.get("EMODIST_BENCH_BASELINE", "HEAD" if quick else DEFAULT_BASELINE)
    cached = None if quick else os.environ.get("EMODIST_BENCH_BASELINE_REPORT")
    classifiers = ["linear-svm", "medium-knn"] if quick else ["all"]
    with tempfile.TemporaryDirectory(prefix="bench-evaluate-") as tmp:
        tmp = Path(tmp)
        store = _quick_store(tmp) if quick else os.environ.get("EMODIST_EVAL_STORE")
        if not store:
            raise RuntimeError("set EMODIST_EVAL_STORE to the feature store to evaluate")
        if cached:
            base, base_wall, base_cpu = json.loads(Path(cached).read_text()), math.nan, math.nan
        else:
            tree = checkout(commit, tmp / "baseline")
            try:
                base, base_wall, base_cpu = run_evaluation(
                    tree, evaluate_command(store, features, classifiers, str(tmp / "base"), jobs))
            finally:
                remove_checkout(tree)
        new, new_wall, new_cpu = run_evaluation(
            ROOT, evaluate_command(store, features, classifiers, str(tmp / "new"), jobs))
        fast, _, _ = run_evaluation(
            ROOT, evaluate_command(store, features, ["quick"], str(tmp / "quick"), jobs))
    rows_cmp = compare_reports(base, new)
    same = [r for r in rows_cmp if not r["changed"]]
    broken = [f"{r['features']}/{r['classifier']}/{r['balance']}" for r in same if not r["identical"]]
    ratio = base["seconds"] / max(new["seconds"], 1e-9)
    rows = [row("baseline fit seconds", base["seconds"], 0, "s", f"commit {commit}"),
            row("current fit seconds", new["seconds"], 0, "s", "this tree"),
            row("speed-up (baseline / current)", ratio, 0, "x", f"{jobs} processes"),
            row("current process wall seconds", new_wall, 0, "s", "start, load, fits, report"),
            row("current CPU seconds", new_cpu, 0, "s", "user + system, with the workers"),
            row("unchanged presets predicting identically", len(same) - len(broken), 0, "results",
                f"of {len(same)}" + (f"; differ: {', '.join(broken)}" if broken else "")),
            row("--classifiers quick fit seconds", fast["seconds"], 0, "s", " ".join(features))]
    if not math.isnan(base_wall):  # the baseline ran here, not read from a report
        rows[3:3] = [row("baseline process wall seconds", base_wall, 0, "s", "start, load, fits, report"),
                     row("baseline CPU seconds", base_cpu, 0, "s", "user + system, with the workers")]
    for r in rows_cmp:
        if r["changed"]:
            note = f"identical={r['identical']}; balanced {r['balanced_accuracy'][0]:.3f} -> " \
                   f"{r['balanced_accuracy'][1]:.3f}"
            rows.append(row(f"accuracy after {r['features']}/{r['classifier']}/{r['balance']}",
                            r["accuracy"][1], 0, "", f"before {r['accuracy'][0]:.3f}; {note}"))
    summary = (f"{base['seconds']:.1f} s -> {new['seconds']:.1f} s of fits ({ratio:.2f}x) on "
               f"{' '.join(features)}; {len(same) - len(broken)}/{len(same)} unchanged results "
               f"identical; quick presets {fast['seconds']:.1f} s\n" + changed_table(rows_cmp))
    return {"name": "evaluation side by side with a baseline commit", "machine": machine(),
            "rows": rows, "summary": summary, "comparison": rows_cmp}


if __name__ == "__main__":
    from benchmarks.common import main

    main(run)
