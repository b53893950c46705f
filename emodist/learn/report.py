"""Evaluation reports: JSON, Markdown, figures, console table, and the comparison of reports.

Nothing here prints: :func:`ranked_table` and :func:`summary_lines` are shown
by the command line (:func:`emodist.cli.evaluate.print_summary`).

Everything here reads the report dictionary returned by
:func:`emodist.learn.evaluate.run_evaluate` (or its ``report.json``,
:func:`load_report`); nothing is recomputed.  Confusion matrices are drawn
as in the reference study: rows are the true class, cells are
row-normalised percentages, and two extra columns give each true class's
true-positive rate (TPR) and false-negative rate (FNR).

:func:`comparison_markdown` lays one or more reports side by side with the
reference study's figures: for each report its chance and majority-class
rates, the human ceiling (split-half agreement of the listeners, with its
95% interval) and, per feature set, the best fold-mean accuracy, balanced
accuracy and macro-F1 and the best track-level accuracy (majority vote or
mean probability), each with its fold standard deviation and the preset that
reached it.  Only the always-majority macro-F1 is derived from the class
shares.  ``report.md`` opens with this table and ``emodist compare`` prints
it for several reports.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from emodist.errors import EmodistError
from emodist.store.outputs import staged_folder

__all__ = [
    "HEADER",
    "METRICS",
    "STUDY",
    "bar_figure",
    "baseline_rows",
    "best_rows",
    "ceiling_line",
    "comparison_markdown",
    "confusion_figure",
    "confusion_filename",
    "confusion_markdown",
    "load_report",
    "markdown",
    "ranked_table",
    "result_label",
    "summary_lines",
    "write_report",
]

#: Headline metrics in display order, with their short column titles.
METRICS = (("accuracy", "acc"), ("balanced_accuracy", "bal acc"), ("macro_f1", "macro-F1"))


def _pct(x: float) -> str:
    return f"{100.0 * x:.1f}"


def _pm(summary: dict) -> str:
    return f"{_pct(summary['mean'])} ± {_pct(summary['std'])}"


def _short(name: str) -> str:
    return name.replace("_", " ")


def result_label(r: dict) -> str:
    """A result's label: ``"Bagged Trees · handcrafted"`` (+ ``" · weights"`` when class-weighted).

    Parameters
    ----------
    r : dict
        A result row of a report (its ``name``, ``features`` and ``balance``).

    Returns
    -------
    str
    """
    extra = " · weights" if r["balance"] == "weights" else ""
    return f"{r['name']} · {r['features']}{extra}"


def confusion_filename(r: dict) -> str:
    """File name of a result row's confusion-matrix PNG.

    ``confusion_<features>_<classifier>[_weights].png`` from the row's
    ``features``, ``classifier`` and ``balance``, safe characters only.
    """
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

    Parameters
    ----------
    report : dict
        An evaluation report.
    metric : str
        Segment metric of the bars (class targets).

    Returns
    -------
    matplotlib.figure.Figure
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
    """Markdown table of a confusion matrix: row-normalised %, TPR, FNR (+ precision row).

    Parameters
    ----------
    conf : dict
        As produced by :func:`emodist.learn.scoring.confusion`.
    per_class : dict, optional
        Per-class scores; adds a precision row.

    Returns
    -------
    str
    """
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
    """One sentence on the human ceiling of ``report`` (or why there is none)."""
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
    """The whole report as Markdown text (``report.md``).

    Parameters
    ----------
    report : dict
        An evaluation report.

    Returns
    -------
    str
    """
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
    if "splits" in report.get("folds", {}):  # a dataset's published splits
        out.append(f"- evaluation: {st['cv']}; the same splits for every model (each segment's "
                   "part in each split in report.json)")
    else:
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
    """A table of the ranked results (best first).

    Parameters
    ----------
    report : dict
    top : int, optional
        Only the ``top`` best rows.

    Returns
    -------
    rich.table.Table
    """
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
    """The lines shown under the ranked table: baselines and where the files are.

    Parameters
    ----------
    report : dict

    Returns
    -------
    list of str
    """
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


# --------------------------------------------------------------------------
# The comparison of reports.
# --------------------------------------------------------------------------

#: The reference study's figures: (row label, features, segment accuracy).
STUDY = (
    ("reference study: Bagged Trees", "handcrafted", 0.501),
    ("reference study: Cubic SVM", "deep (Inception-v3)", 0.337),
    ("reference study: chance", "-", 0.125),
)
HEADER = ["source", "target", "features", "accuracy", "balanced accuracy", "macro-F1",
          "track accuracy", "mean JSD"]
_NA = "-"


def _cell(summary: dict, who: str | None = None) -> str:
    text = f"{_pct(summary['mean'])} ± {_pct(summary['std'])}"
    return f"{text} ({who})" if who else text


def load_report(path) -> dict:
    """A ``report.json``, given its path or the report folder holding it.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    dict

    Raises
    ------
    emodist.errors.EmodistError
        Nothing readable there, or not an evaluation report.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    try:
        report = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EmodistError(f"{path}: cannot read an evaluation report ({exc})") from exc
    if not isinstance(report, dict) or not {"settings", "results"} <= set(report):
        raise EmodistError(f"{path}: not an emodist evaluation report")
    return report


def _target(report: dict) -> str:
    st, data = report["settings"], report.get("data", {})
    n = len(data.get("classes", []))
    return {"class": f"emotion ({n})", "factors": f"GEMS factor ({n})"}.get(st["target"], "distribution (9)")


def _best(results: list[dict], get, lowest: bool = False):
    scored = [(get(r), r) for r in results]
    scored = [(v, r) for v, r in scored if v is not None]
    if not scored:
        return None
    return (min if lowest else max)(scored, key=lambda vr: vr[0]["mean"])


def _track_summary(r: dict):
    """The better of a result's track-level accuracies: majority vote or mean probability."""
    options = [(r["track"]["accuracy"], "vote")]
    if "track_proba" in r:
        options.append((r["track_proba"]["accuracy"], "mean proba"))
    return max(options, key=lambda o: o[0]["mean"])


def best_rows(report: dict, source: str) -> list[list[str]]:
    """One row per feature set: its best figures in ``report`` (preset in brackets).

    Parameters
    ----------
    report : dict
    source : str
        The report's label in the table.

    Returns
    -------
    list of list of str
        Cells in :data:`HEADER` order.
    """
    rows = []
    for fs in report["settings"]["features"]:
        res = [r for r in report["results"] if r["features"] == fs]
        if not res:
            continue
        row = [source, _target(report), f"best, {fs}"]
        if "distribution" in res[0]:
            best = _best(res, lambda r: r["distribution"]["jsd"], lowest=True)
            row += [_NA] * 4 + [f"{best[0]['mean']:.4f} ± {best[0]['std']:.4f} ({best[1]['name']})"]
        else:
            for m in ("accuracy", "balanced_accuracy", "macro_f1"):
                v, r = _best(res, lambda x, m=m: x["segment"][m])
                row.append(_cell(v, r["name"] + (" · weights" if r["balance"] == "weights" else "")))
            v, r = _best(res, lambda x: _track_summary(x)[0])
            row.append(_cell(v, f"{r['name']}, {_track_summary(r)[1]}"))
            row.append(_NA)
        rows.append(row)
    return rows


def baseline_rows(report: dict, source: str) -> list[list[str]]:
    """Chance, majority class (or the train-mean distribution) and the human ceiling.

    The arguments and the rows are those of :func:`best_rows`.
    """
    target = _target(report)
    rows = []
    b = report.get("baselines", {})
    if "segment" in b:
        seg, trk = b["segment"], b["track"]
        k = len(report["data"]["classes"])
        share = seg["majority"]
        rows.append([source, target, "chance (1 / classes)", _pct(seg["chance"]), _pct(seg["chance"]),
                     _NA, _pct(seg["chance"]), _NA])
        rows.append([source, target, f"always {seg['majority_class'].replace('_', ' ')}", _pct(share),
                     _pct(1.0 / k), _pct(2 * share / (1 + share) / k), _pct(trk["majority"]), _NA])
    elif "train_mean" in b:
        j = b["train_mean"]["jsd"]
        rows.append([source, target, "train-mean distribution", _NA, _NA, _NA, _NA,
                     f"{j['mean']:.4f} ± {j['std']:.4f}"])
    c = report.get("ceiling") or {}
    if c.get("available"):
        a = c["agreement"]
        agree = f"{_pct(a['value'])} [{_pct(a['ci'][0])}, {_pct(a['ci'][1])}]"
        jsd = c["jsd"]
        rows.append([source, target, f"human ceiling ({c['level']}; split-half, track level)", agree,
                     _NA, _NA, agree,
                     f"{jsd['value']:.4f} [{jsd['ci'][0]:.4f}, {jsd['ci'][1]:.4f}]"])
    else:
        rows.append([source, target, "human ceiling", "not available", _NA, _NA, _NA, _NA])
    return rows


def comparison_markdown(reports) -> str:
    """The comparison table of ``(source label, report)`` pairs, as Markdown.

    The reference study's rows come first, then each report's baselines,
    human ceiling and best rows.  Figures are percentages, mean ± std over
    folds, except the ceiling (value [95% interval]) and JSD.

    Parameters
    ----------
    reports : iterable of (str, dict)

    Returns
    -------
    str
    """
    rows = [[label, "emotion (8)", feats, _pct(acc), _NA, _NA, _NA, _NA] for label, feats, acc in STUDY]
    for source, report in reports:
        rows += baseline_rows(report, source) + best_rows(report, source)
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    note = ("The study: 400 tracks, 15 s segments, 5-fold CV, MATLAB Classification Learner. "
            "Human ceiling: share of tracks whose two random halves of the listeners name the same "
            "dominant class (95% bootstrap interval over tracks); its JSD is between the halves' "
            "distributions. Track accuracy: the better of majority vote and mean probability.")
    return "\n".join(lines) + "\n\n" + note + "\n"
