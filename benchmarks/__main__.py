"""Run the emodist benchmarks and write their results.

    python -m benchmarks [--quick] [--only NAME ...] [--out DIR] [--readme FILE]

Every ``benchmarks/bench_<name>.py`` defines ``run(quick=False) -> dict``
(``{"name", "machine", "rows": [{"metric", "value", "spread", "unit",
"note"}], "summary"}``).  Each one runs in its own Python process, so a
benchmark that fails (an exception, a crash, a timeout) is reported and the
others still run, and peak-memory figures of one do not leak into the next.

For each benchmark ``<out>/<name>.json`` holds the returned dict plus the
run's date, command, duration, status and machine description; after every
run ``<out>/RESULTS.md`` is rebuilt from all the JSON files there: one
Markdown table per benchmark (metric, median, spread, unit, note) with the
command and date that produced it.  ``--quick`` runs tiny inputs and writes
to ``benchmarks/results/quick`` unless ``--out`` says otherwise, so quick
figures never replace real ones.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchmarks.common import machine

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"
ROW_KEYS = ("metric", "value", "spread", "unit", "note")
README_START = "<!-- benchmarks:start -->"
README_END = "<!-- benchmarks:end -->"


# --- discovery and validation ---------------------------------------------


def discover(directory: Path = BENCH_DIR) -> dict[str, Path]:
    """Benchmark scripts of ``directory``: short name -> path, sorted by name.

    ``bench_handcrafted.py`` has the short name ``handcrafted``.
    """
    return {p.stem[len("bench_"):]: p for p in sorted(Path(directory).glob("bench_*.py"))}


def validate(result) -> list[str]:
    """Problems with the shape of a benchmark's returned dict (empty: none).

    Checks the keys and types of the documented shape, that there is at
    least one row, and that every value and spread is a finite number.
    """
    if not isinstance(result, dict):
        return [f"run() returned {type(result).__name__}, not dict"]
    problems = []
    for key, kind in (("name", str), ("machine", dict), ("rows", list), ("summary", str)):
        if not isinstance(result.get(key), kind):
            problems.append(f"'{key}' missing or not {kind.__name__}")
    rows = result.get("rows") if isinstance(result.get("rows"), list) else []
    if not rows:
        problems.append("no rows")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            problems.append(f"row {i} is not a dict")
            continue
        missing = [k for k in ROW_KEYS if k not in row]
        if missing:
            problems.append(f"row {i} lacks {', '.join(missing)}")
        for key in ("value", "spread"):
            value = row.get(key)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if key in row and not (ok and math.isfinite(value)):
                problems.append(f"row {i} ({row.get('metric')}): {key}={value!r} is not finite")
        if not isinstance(row.get("metric", ""), str) or not row.get("metric"):
            problems.append(f"row {i}: empty metric")
    return problems


# --- running one benchmark -------------------------------------------------


def _load_module(path: Path):
    spec = importlib.util.spec_from_file_location(f"benchmarks.{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _child(path: Path, quick: bool, out: Path) -> int:
    """Run one benchmark in this process and write its dict (or error) to ``out``."""
    try:
        result = _load_module(path).run(quick=quick)
        payload = {"result": result}
    except BaseException:  # noqa: BLE001 - reported to the parent, which goes on
        payload = {"error": traceback.format_exc(limit=20)}
    out.write_text(json.dumps(payload, default=_jsonable, allow_nan=True))
    return 0


def _jsonable(value):
    """numpy scalars and other stragglers in a result dict, as JSON values."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_one(path: Path, *, quick: bool = False, timeout: float | None = None,
            capture: bool = False) -> dict:
    """Run the benchmark script ``path`` in a fresh Python process.

    Parameters
    ----------
    path : Path
        A ``bench_<name>.py`` file.
    quick : bool
        Passed to its ``run``.
    timeout : float, optional
        Seconds before the process is killed and the benchmark marked failed.
    capture : bool
        Capture the child's output instead of passing it through (tests).

    Returns
    -------
    dict
        ``{"status": "ok" | "failed", "seconds", "result" (the returned
        dict or None), "error" (one paragraph or None), "output"}``.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("MPLBACKEND", "Agg")
    with tempfile.TemporaryDirectory(prefix="emodist-bench-") as tmp:
        out = Path(tmp) / "result.json"
        argv = [sys.executable, "-m", "benchmarks", "--child", str(path), "--child-out", str(out)]
        if quick:
            argv.append("--quick")
        t0 = time.perf_counter()
        pipe = subprocess.PIPE if capture else None
        # own process group, so a timeout also stops what the benchmark started
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=pipe, text=True,
                                stderr=subprocess.STDOUT if capture else None,
                                start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=timeout)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            output, _ = proc.communicate()
            code = None
        output = output or ""
        seconds = time.perf_counter() - t0
        payload = json.loads(out.read_text()) if out.exists() else {}
    if code is None:
        error = f"timed out after {timeout:.0f} s"
    elif "error" in payload:
        error = payload["error"].strip()
    elif code != 0 or "result" not in payload:
        error = f"benchmark process exited with status {code} and no result"
    else:
        problems = validate(payload["result"])
        error = ("bad result: " + "; ".join(problems)) if problems else None
    return {"status": "failed" if error else "ok", "seconds": seconds,
            "result": payload.get("result"), "error": error, "output": output}


def record(short: str, outcome: dict, *, quick: bool, command: str, date: str) -> dict:
    """The JSON document written for one benchmark run.

    The benchmark's own dict (``name``, ``machine``, ``rows``, ``summary``)
    plus ``benchmark`` (short name), ``status``, ``error``, ``date``,
    ``command``, ``quick`` and ``seconds``; a failed run has no rows.
    """
    result = outcome["result"] if outcome["status"] == "ok" else {}
    return {
        "benchmark": short,
        "name": result.get("name", short),
        "status": outcome["status"],
        "error": outcome["error"],
        "date": date,
        "command": command,
        "quick": quick,
        "seconds": round(outcome["seconds"], 3),
        "machine": result.get("machine") or machine(),
        "rows": result.get("rows", []),
        "summary": result.get("summary", ""),
    }


# --- Markdown --------------------------------------------------------------


def fmt(value: float) -> str:
    """A figure with 3-4 significant digits, no exponent for everyday sizes."""
    value = float(value)
    if value == 0 or not math.isfinite(value):
        return str(int(value)) if value == 0 else str(value)
    mag = abs(value)
    if mag >= 1000:
        return f"{value:,.0f}"
    if mag >= 1e-3:
        return f"{value:.4g}"
    return f"{value:.2e}"


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def machine_line(info: dict) -> str:
    """One line describing a machine dict from :func:`benchmarks.common.machine`."""
    parts = [info.get("cpu_model", "unknown CPU"), f"{info.get('cpu_count', '?')} cores"]
    simd = set(info.get("simd") or ())
    widest = next((n for f, n in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"))
                   if f in simd), None)
    if widest:
        parts.append(widest + (" + FMA" if "fma" in simd else ""))
    if info.get("memory_gib"):
        parts.append(f"{info['memory_gib']} GiB RAM")
    parts.append(f"Python {info.get('python', '?')}")
    return ", ".join(parts)


def markdown_table(doc: dict) -> str:
    """The Markdown section of one benchmark record."""
    title = doc.get("name") or doc["benchmark"]
    lines = [f"### {title}", ""]
    if doc["status"] != "ok":
        first = (doc.get("error") or "").strip().splitlines()
        lines += [f"**failed** ({doc['date']}): `{_cell(first[-1] if first else 'unknown error')}`", ""]
        return "\n".join(lines)
    if doc.get("summary"):
        lines += [doc["summary"], ""]
    lines += ["| metric | median | spread | unit | note |", "|---|---:|---:|---|---|"]
    for row in doc["rows"]:
        spread = f"± {fmt(row['spread'])}" if row["spread"] else "–"
        lines.append(f"| {_cell(row['metric'])} | {fmt(row['value'])} | {spread} "
                     f"| {_cell(row.get('unit', ''))} | {_cell(row.get('note', ''))} |")
    quick = " (quick inputs)" if doc.get("quick") else ""
    footer = (f"`{doc['command']}`, {doc['date']}, {doc['seconds']:.0f} s{quick}; "
              f"{_cell(machine_line(doc.get('machine') or {}))}")
    lines += ["", footer, ""]
    return "\n".join(lines)


def markdown(docs: list[dict]) -> str:
    """``RESULTS.md``: every benchmark's table, in name order."""
    intro = ("Median and spread (max - min) over repeated runs; '–' marks a derived figure "
             "(ratio, count) or a single measurement. Written by "
             "`python -m benchmarks` (see `benchmarks/__main__.py`).")
    head = ["# emodist benchmark results", "", intro, ""]
    body = [markdown_table(d) for d in sorted(docs, key=lambda d: d["benchmark"])]
    return "\n".join(head + body).rstrip() + "\n"


def load_records(out_dir: Path) -> list[dict]:
    """Every benchmark record (``*.json``) in ``out_dir``."""
    docs = []
    for path in sorted(Path(out_dir).glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except ValueError:
            continue
        if isinstance(doc, dict) and "benchmark" in doc and "rows" in doc:
            docs.append(doc)
    return docs


def write_results(docs: list[dict], out_dir: Path) -> Path:
    """Write ``<name>.json`` for ``docs`` and rebuild ``RESULTS.md``; returns its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for doc in docs:
        tmp = out_dir / f"{doc['benchmark']}.json.tmp"
        tmp.write_text(json.dumps(doc, indent=2, allow_nan=True) + "\n")
        tmp.replace(out_dir / f"{doc['benchmark']}.json")
    path = out_dir / "RESULTS.md"
    path.write_text(markdown(load_records(out_dir)))
    return path


def update_readme(readme: Path, results_md: str) -> bool:
    """Replace the text between the benchmark markers of ``readme``.

    The markers are ``<!-- benchmarks:start -->`` and
    ``<!-- benchmarks:end -->``; the tables (without RESULTS.md's title)
    go between them.  Returns False (and changes nothing) without markers.
    """
    text = readme.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        return False
    tables = results_md.split("\n", 1)[1].lstrip("\n") if results_md.startswith("# ") else results_md
    new = text[: start + len(README_START)] + "\n" + tables.rstrip() + "\n" + text[end:]
    readme.write_text(new)
    return True


# --- command line ---------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks",
                                description="Run emodist's benchmarks and write their results.")
    p.add_argument("--quick", action="store_true", help="tiny inputs (seconds, for smoke tests)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("--out", type=Path, help="results folder (default benchmarks/results, "
                                            "benchmarks/results/quick with --quick)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds per benchmark before it is stopped (default: none)")
    p.add_argument("--readme", type=Path,
                   help=f"also put the tables between {README_START} and {README_END} in FILE")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None, *, bench_dir: Path = BENCH_DIR) -> int:
    """Run the selected benchmarks; 0 if all succeeded, 1 if one failed, 2 on bad input."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    if args.child:
        return _child(args.child, args.quick, args.child_out)
    found = discover(bench_dir)
    if args.list:
        print("\n".join(found) or "no benchmarks found")
        return 0
    names = args.only or list(found)
    unknown = [n for n in names if n not in found]
    if unknown:
        print(f"benchmarks: error: unknown benchmark {', '.join(unknown)} "
              f"(have: {', '.join(found) or 'none'})", file=sys.stderr)
        return 2
    if not names:
        print(f"benchmarks: error: no bench_*.py in {bench_dir}", file=sys.stderr)
        return 2
    out_dir = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    command = shlex.join(["python", "-m", "benchmarks", *argv])
    date = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    docs = []
    for name in names:
        print(f"== {name}", flush=True)
        outcome = run_one(found[name], quick=args.quick, timeout=args.timeout)
        doc = record(name, outcome, quick=args.quick, command=command, date=date)
        docs.append(doc)
        write_results([doc], out_dir)
        if doc["status"] == "ok":
            print(markdown_table(doc), flush=True)
        else:
            print(f"== {name} FAILED after {doc['seconds']:.0f} s:\n{doc['error']}",
                  file=sys.stderr, flush=True)
    results = out_dir / "RESULTS.md"
    if args.readme and not update_readme(args.readme, results.read_text()):
        print(f"benchmarks: {args.readme} has no {README_START} marker; not updated",
              file=sys.stderr)
    failed = [d["benchmark"] for d in docs if d["status"] != "ok"]
    print(f"wrote {results}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
