"""Evaluation reports: JSON, Markdown, confusion-matrix heatmaps, bar chart, console table.

Nothing here prints: :func:`ranked_table` and :func:`summary_lines` are shown
by the command line (:func:`emodist.cli.evaluate.print_summary`).

Everything here reads the report dictionary returned by
:func:`emodist.learn.evaluate.run_evaluate`; nothing is recomputed.  Confusion
matrices are drawn as in the reference study: rows are the true class,
cells are row-normalised percentages, and two extra columns give each true
class's true-positive rate (TPR) and false-negative rate (FNR).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from emodist.learn.compare import comparison_markdown
from emodist.store.outputs import staged_folder

#: Headline metrics in display order, with their short column titles.
METRICS = (("accuracy", "acc"), ("balanced_accuracy", "bal acc"), ("macro_f1", "macro-F1"))


def _pct(x: float) -> str:
    return f"{100.0 * x:.1f}"


def _pm(summary: dict) -> str:
    return f"{_pct(summary['mean'])} ± {_pct(summary['std'])}"


def _short(name: str) -> str:
    return name.replace("_", " ")


def result_label(r: dict) -> str:
    """``"Bagged Trees · handcrafted"`` (+ ``" · weights"`` when class-weighted)."""
    extra = " · weights" if r["balance"] == "weights" else ""
    return f"{r['name']} · {r['features']}{extra}"


def confusion_filename(r: dict) -> str:
    """File name of a result's confusion-matrix PNG."""
    stem = f"confusion_{r['features']}_{r['classifier']}" + ("_weights" if r["balance"] == "weights" else "")
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem) + ".png"


# --------------------------------------------------------------------------
# Figures.
# --------------------------------------------------------------------------


def confusion_figure(conf: dict, title: str = ""):
    """Heatmap of a row-normalised confusion matrix with TPR / FNR columns.

    Parameters
    ----------
    conf : dict
        ``classes``, ``percent``, ``counts``, ``tpr``, ``fnr`` as produced by
        :func:`emodist.learn.scoring.confusion`.
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    classes = [_short(c) for c in conf["classes"]]
    pct = np.asarray(conf["percent"], dtype=float)
    counts = np.asarray(conf["counts"])
    rates = np.column_stack([conf["tpr"], conf["fnr"]])
    k = len(classes)
    size = 1.0 + 0.75 * k
    fig = Figure(figsize=(size + 2.6, size * 0.85 + 0.6), layout="constrained")
    gs = fig.add_gridspec(1, 2, width_ratios=[k, 2.2])
    ax = fig.add_subplot(gs[0])
    axr = fig.add_subplot(gs[1], sharey=ax)
    ax.imshow(pct, cmap="Blues", vmin=0, vmax=100, aspect="auto")
    for i in range(k):
        for j in range(k):
            if counts[i, j] == 0 and i != j:
                continue
            color = "white" if pct[i, j] > 55 else "black"
            ax.text(j, i, f"{pct[i, j]:.0f}%", ha="center", va="center", fontsize=9, color=color)
    ax.set_xticks(range(k), classes, rotation=40, ha="right")
    ax.set_yticks(range(k), [f"{c} ({n})" for c, n in zip(classes, counts.sum(axis=1))])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    # TPR in green shades, FNR in red shades, as MATLAB's summary columns.
    rgb = np.ones((k, 2, 3))
    t = rates[:, 0:1] / 100.0
    rgb[:, 0, :] = 1 - t * np.array([0.55, 0.2, 0.55])
    f = rates[:, 1:2] / 100.0
    rgb[:, 1, :] = 1 - f * np.array([0.2, 0.6, 0.6])
    axr.imshow(rgb, aspect="auto")
    for i in range(k):
        for j in range(2):
            axr.text(j, i, f"{rates[i, j]:.0f}%", ha="center", va="center", fontsize=9)
    axr.set_xticks([0, 1], ["TPR", "FNR"])
    axr.tick_params(axis="y", left=False, labelleft=False)
    for a in (ax, axr):
        a.set_xticks(np.arange(-0.5, a.get_xlim()[1], 1), minor=True)
        a.set_yticks(np.arange(-0.5, k, 1), minor=True)
        a.grid(which="minor", color="white", linewidth=1.5)
        a.tick_params(which="minor", length=0)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def bar_figure(report: dict, metric: str = "accuracy"):
    """Horizontal bars of every result's fold-mean ``metric`` (± std), best on top.

    The random-guess and majority-class rates are drawn as vertical lines.
    For a distribution report the bars show mean JSD (lower is better) and
    the train-mean baseline.
    """
    from matplotlib.figure import Figure

    results = report["results"]
    dist = bool(results) and "distribution" in results[0]
    if dist:
        vals = [r["distribution"]["jsd"] for r in results]
        xlabel = "mean Jensen-Shannon divergence (lower is better)"
        lines = [("train-mean baseline", report["baselines"]["train_mean"]["jsd"]["mean"], "C3")]
        scale = 1.0
    else:
        vals = [r["segment"][metric] for r in results]
        xlabel = f"segment {_short(metric)} (%), mean ± std over {report['settings']['folds']} folds"
        b = report["baselines"]["segment"]
        lines = [("random guess", b["chance"], "C3"), (f"majority ({_short(b['majority_class'])})",
                                                       b["majority"], "C1")]
        scale = 100.0
    n = len(results)
    fig = Figure(figsize=(8, 1.2 + 0.3 * n), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(n)[::-1]
    colors = {name: f"C{i % 10}" for i, name in enumerate(report["settings"]["features"])}
    ax.barh(y, [scale * v["mean"] for v in vals], xerr=[scale * v["std"] for v in vals],
            color=[colors.get(r["features"], "C7") for r in results], alpha=0.85, capsize=2)
    ax.set_yticks(y, [result_label(r) for r in results], fontsize=8)
    for label, value, c in lines:
        ax.axvline(scale * value, color=c, linestyle="--", linewidth=1, label=f"{label}: {scale * value:.1f}"
                   if scale == 100 else f"{label}: {value:.3f}")
    ax.set_xlabel(xlabel)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("classifier comparison (grouped cross-validation)", fontsize=10)
    return fig


# --------------------------------------------------------------------------
# Markdown.
# --------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def confusion_markdown(conf: dict, per_class: dict | None = None) -> str:
    """Markdown table of a confusion matrix: row-normalised %, TPR, FNR (+ precision row)."""
    classes = conf["classes"]
    header = ["true \\ predicted"] + [_short(c) for c in classes] + ["TPR", "FNR", "n"]
    rows = []
    for i, c in enumerate(classes):
        row = [f"**{_short(c)}**"] + [f"{v:.1f}" for v in conf["percent"][i]]
        row += [f"{conf['tpr'][i]:.1f}", f"{conf['fnr'][i]:.1f}", str(sum(conf["counts"][i]))]
        rows.append(row)
    if per_class:
        rows.append(["*precision*"] + [_pct(per_class[c]["precision"]) for c in classes] + ["", "", ""])
    return _table(header, rows)


def _class_rows(report: dict) -> list[list[str]]:
    rows = []
    for i, r in enumerate(report["results"], 1):
        s, t, tp = r["segment"], r["track"], r.get("track_proba")
        rows.append([str(i), r["name"], r["features"], r["balance"]]
                    + [_pm(s[m]) for m, _ in METRICS]
                    + [_pm(t["accuracy"]), _pm(t["balanced_accuracy"])]
                    + ([_pm(tp["accuracy"]), _pm(tp["balanced_accuracy"])] if tp else ["-", "-"]))
    return rows


def _ranked_by(report: dict) -> str:
    return _short(report["settings"].get("rank_by", "accuracy"))


def ceiling_line(report: dict) -> str:
    """One sentence on the human ceiling of the report (or why there is none)."""
    c = report.get("ceiling") or {}
    if not c.get("available"):
        return f"Human ceiling: not available ({c.get('reason', 'no listener responses')})."
    a, k = c["agreement"], c["kappa"]
    return (f"Human ceiling ({c['level']} level, {c['n_tracks']} tracks, {c['n_splits']} random "
            f"split-halves of the listeners): the halves agree on the dominant class for "
            f"{_pct(a['value'])}% of tracks (95% CI {_pct(a['ci'][0])}-{_pct(a['ci'][1])}), "
            f"kappa {k['value']:.2f}; chance {_pct(c['chance'])}%, majority {_pct(c['majority'])}%.")


def _dist_rows(report: dict) -> list[list[str]]:
    rows = []
    base = report["baselines"]["train_mean"]
    rows.append(["-", "train-mean baseline", "-", f"{base['jsd']['mean']:.4f} ± {base['jsd']['std']:.4f}",
                 _pm(base["top1"]), _pm(base["top3"])])
    for i, r in enumerate(report["results"], 1):
        d = r["distribution"]
        rows.append([str(i), r["name"], r["features"], f"{d['jsd']['mean']:.4f} ± {d['jsd']['std']:.4f}",
                     _pm(d["top1"]), _pm(d["top3"])])
    return rows


def markdown(report: dict) -> str:
    """The whole report as Markdown text."""
    st, data, store = report["settings"], report["data"], report["store"]
    out = ["# emodist evaluation report", "", comparison_markdown([("this run", report)]), "## Run", ""]
    out.append(f"- store: `{store.get('url')}` ({store.get('n_segments')} segments; "
               f"dataset: {store.get('dataset', 'n/a')})")
    models = {g: d.get("model_sha256") for g, d in (store.get("feature_groups") or {}).items()
              if isinstance(d, dict) and d.get("model_sha256")}
    if store.get("model_sha256"):
        models.setdefault("deep", store["model_sha256"])
    for g, sha in models.items():
        out.append(f"- {g} model sha256: `{sha}`")
    out.append(f"- target: {st['target']}; ranked by: {_ranked_by(report)}; label rule: {st['label_rule']}; features: "
               f"{', '.join(st['features'])}; balance: {st['balance']}")
    out.append(f"- cross-validation: {st['folds']} folds, {st['cv']}, seed {st['seed']}; "
               f"the same folds for every model (fold per segment in report.json)")
    groups = (f" in {data['n_groups']} groups (by {st['group_by']})"
              if "n_groups" in data and st.get("group_by", "track_id") != "track_id" else "")
    out.append(f"- evaluated: {data['n_segments']} segments of {data['n_tracks']} tracks{groups}; excluded: "
               + ", ".join(f"{k}: {v}" for k, v in data["excluded"].items()))
    out.append(f"- created {report['created']} by emodist {report['emodist_version']} "
               f"in {report['seconds']:.1f} s ({st['executor']})")
    out += ["", "## Classes", ""]
    out.append(_table(["class", "segments"], [[_short(c), str(n)] for c, n in data["class_counts"].items()]))
    out += ["", ceiling_line(report)]
    if st["target"] == "distribution":
        out += ["", "## Vote-distribution prediction (mean ± std over folds)", ""]
        out.append("JSD: Jensen-Shannon divergence (base 2) to the true 9-way distribution; "
                   "top-1 / top-3: the true dominant emotion is the predicted first / among the "
                   "predicted first three (%).")
        out += ["", _table(["rank", "model", "features", "JSD", "top-1 %", "top-3 %"], _dist_rows(report))]
    else:
        b = report["baselines"]
        out += ["", f"## Results (%, mean ± std over folds; ranked by segment {_ranked_by(report)})", ""]
        out.append(f"Random guess: {_pct(b['segment']['chance'])}%; majority class "
                   f"({_short(b['segment']['majority_class'])}): {_pct(b['segment']['majority'])}% of "
                   f"segments, {_pct(b['track']['majority'])}% of tracks.")
        header = ["rank", "classifier", "features", "balance"] + [t for _, t in METRICS] + [
            "track acc", "track bal acc", "track acc (mean proba)", "track bal acc (mean proba)"]
        out.append("Track level: majority vote of the segments' predictions, and the argmax of the "
                   "mean of their class probabilities (presets with probabilities only).")
        out += ["", _table(header, _class_rows(report))]
        if report.get("skipped"):
            out += ["", "Not run: " + "; ".join(
                f"{s['classifier']} ({s['features']}, {s['balance']}): {s['reason']}" for s in report["skipped"])]
        out += ["", "## Confusion matrices (segments, row-normalised %)", ""]
        for r in report["results"]:
            s = r["segment"]
            out += [f"### {result_label(r)}", ""]
            tp = r.get("track_proba")
            extra = f" (mean proba: {_pm(tp['accuracy'])})" if tp else ""
            out.append(f"accuracy {_pm(s['accuracy'])}, balanced accuracy {_pm(s['balanced_accuracy'])}, "
                       f"macro-F1 {_pm(s['macro_f1'])}; track-level accuracy {_pm(r['track']['accuracy'])}"
                       + extra)
            out += ["", confusion_markdown(s["confusion"], s["per_class"]), ""]
            png = report.get("files", {}).get("confusion", {}).get(_result_key(r))
            if png:
                out += [f"![confusion matrix]({Path(png).name})", ""]
    return "\n".join(out) + "\n"


def _result_key(r: dict) -> str:
    return f"{r['features']}/{r['classifier']}/{r['balance']}"


# --------------------------------------------------------------------------
# Writing and printing.
# --------------------------------------------------------------------------


def write_report(report: dict, out, storage_options: dict | None = None) -> dict:
    """Write report.json, report.md and the figures into ``out``: a folder or any fsspec URL.

    Parameters
    ----------
    report : dict
        Report from :func:`emodist.learn.evaluate.run_evaluate`; its ``files``
        entry is set to the written paths.
    out : str or path-like
        Local folder (created if missing) or a URL such as ``s3://bucket/report/``:
        the files are written to a local temporary folder, then moved or
        uploaded, ``report.json`` last (:func:`emodist.store.outputs.staged_folder`).
    storage_options : dict, optional
        Filesystem options of a URL.

    Returns
    -------
    dict
        ``json``, ``markdown``, ``bar_chart`` paths and ``confusion``
        (result key ``features/classifier/balance`` -> PNG path), under ``out``.
    """
    remote = "://" in str(out) and not str(out).startswith("file://")
    root = str(out).rstrip("/") if remote else Path(str(out).removeprefix("file://"))

    def moved(p: str) -> str:
        return f"{root}/{Path(p).name}" if remote else str(root / Path(p).name)

    # staged, then published with report.json last: an interrupted write leaves no half report
    with staged_folder(out, last="report.json", storage_options=storage_options) as tmp:
        local = _write_local(report, tmp)
        report["files"] = {k: (moved(v) if isinstance(v, str) else
                               {r: moved(q) for r, q in v.items()}) for k, v in local.items()}
        (tmp / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    return report["files"]


def _write_local(report: dict, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": str(out / "report.json"), "markdown": str(out / "report.md"),
             "bar_chart": str(out / "classifiers.png"), "confusion": {}}
    for r in report["results"]:
        if "segment" in r:
            path = out / confusion_filename(r)
            confusion_figure(r["segment"]["confusion"], result_label(r)).savefig(path, dpi=110)
            files["confusion"][_result_key(r)] = str(path)
    if report["results"]:
        bar_figure(report).savefig(files["bar_chart"], dpi=110)
    else:
        files.pop("bar_chart")
    report["files"] = files
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    (out / "report.json").write_text(json.dumps(report, indent=1, sort_keys=False), encoding="utf-8")
    return files


def ranked_table(report: dict, top: int | None = None):
    """A :class:`rich.table.Table` of the ranked results (best first)."""
    from rich.table import Table

    dist = report["settings"]["target"] == "distribution"
    table = Table(title=f"grouped cross-validation, mean ± std over folds, ranked by {_ranked_by(report)}"
                  if not dist else "grouped cross-validation, mean ± std over folds",
                  title_justify="left")
    table.add_column("#", justify="right")
    for col in ("classifier", "features"):
        table.add_column(col)
    if dist:
        for col in ("JSD", "top-1 %", "top-3 %"):
            table.add_column(col, justify="right")
        rows = _dist_rows(report)
        rows = rows[: (top + 1) if top else None]
        for row in rows:
            table.add_row(*row)
        return table
    table.add_column("balance")
    for _, title in METRICS:
        table.add_column(title + " %", justify="right")
    table.add_column("track acc %", justify="right")
    table.add_column("track acc (proba) %", justify="right")
    for row in _class_rows(report)[:top]:
        table.add_row(*row[:8], row[9])
    return table


def summary_lines(report: dict) -> list[str]:
    """The lines shown under the ranked table: baselines and where the files are."""
    lines = []
    if report["settings"]["target"] != "distribution":
        b = report["baselines"]["segment"]
        lines.append(f"random guess {_pct(b['chance'])}%, majority class "
                     f"({_short(b['majority_class'])}) {_pct(b['majority'])}% "
                     f"of {report['data']['n_segments']} segments / {report['data']['n_tracks']} tracks")
    if "ceiling" in report:
        lines.append(ceiling_line(report))
    files = report.get("files")
    if files:
        lines.append(f"report: {files['markdown']} (and report.json, "
                     f"{len(files.get('confusion', {}))} confusion-matrix PNGs)")
    return lines
