"""One comparison table: the reference study, the baselines, the human ceiling, the best runs.

:func:`comparison_markdown` lays one or more evaluation reports (the
dictionaries of :func:`emodist.learn.evaluate.run_evaluate`, or their
``report.json``) side by side with the reference study's figures: for each
report its chance and majority-class rates, the human ceiling (split-half
agreement of the listeners, with its 95% interval) and, per feature set, the
best fold-mean accuracy, balanced accuracy and macro-F1 and the best
track-level accuracy (majority vote or mean probability), each with its fold
standard deviation and the preset that reached it.  Nothing is recomputed
from predictions; only the always-majority macro-F1 is derived from the
class shares.  ``report.md`` opens with this table and ``emodist compare``
prints it for several reports.
"""

from __future__ import annotations

import json
from pathlib import Path

from emodist.errors import EmodistError

#: The reference study's figures: (row label, features, segment accuracy).
STUDY = (
    ("reference study: Bagged Trees", "handcrafted", 0.501),
    ("reference study: Cubic SVM", "deep (Inception-v3)", 0.337),
    ("reference study: chance", "-", 0.125),
)
HEADER = ["source", "target", "features", "accuracy", "balanced accuracy", "macro-F1",
          "track accuracy", "mean JSD"]
_NA = "-"


def _pct(x: float) -> str:
    return f"{100.0 * x:.1f}"


def _cell(summary: dict, who: str | None = None) -> str:
    text = f"{_pct(summary['mean'])} ± {_pct(summary['std'])}"
    return f"{text} ({who})" if who else text


def load_report(path) -> dict:
    """A ``report.json``, given its path or the report folder holding it.

    Raises
    ------
    EmodistError
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
    """One row per feature set: its best figures in ``report`` (preset in brackets)."""
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
    """Chance, majority class (or the train-mean distribution) and the human ceiling."""
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
