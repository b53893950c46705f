"""Reports: files, Markdown tables, confusion heatmaps, bar chart, console table."""

from __future__ import annotations

import json
import re

import matplotlib.image as mpimg
import numpy as np
import pytest
from rich.console import Console

from emodist.cli.evaluate import print_summary
from emodist.learn import evaluate as ev
from emodist.learn import report as rp
from emodist.learn.scoring import confusion
from tests.stores import DEEP, build, make_arrays


@pytest.fixture(scope="module")
def class_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "report"
    ds = build(make_arrays(n_tracks=24, n_segments=2), attrs={"model_sha256": "abc123"})
    r = ev.run_evaluate(ds, features=["handcrafted", DEEP], classifiers=["linear-svm", "medium-knn"],
                        folds=3, balance="both", out=str(out), n_jobs=1)
    return r, out


def test_write_report_files(class_report):
    r, out = class_report
    names = sorted(p.name for p in out.iterdir())
    assert "report.json" in names and "report.md" in names and "classifiers.png" in names
    pngs = [n for n in names if n.startswith("confusion_")]
    assert len(pngs) == len(r["results"]) == 6  # knn has no weighted variant
    assert "confusion_handcrafted_linear-svm_weights.png" in pngs
    img = mpimg.imread(out / pngs[0])
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300
    assert img[..., :3].std() > 0.05  # not a blank picture
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["files"]["confusion"]["handcrafted/linear-svm/none"].endswith(
        "confusion_handcrafted_linear-svm.png")


def test_markdown_numbers_come_from_the_report(class_report):
    r, out = class_report
    md = (out / "report.md").read_text()
    best = r["results"][0]
    acc = best["segment"]["accuracy"]
    row = next(line for line in md.splitlines() if line.startswith("| 1 |"))
    assert f"{100 * acc['mean']:.1f} ± {100 * acc['std']:.1f}" in row
    assert best["name"] in row
    assert "Random guess: 25.0%" in md
    assert "deep model sha256: `abc123`" in md
    assert f"{DEEP} model sha256: `{'0' * 64}`" in md  # the group's own model hash
    lines = md.splitlines()
    assert lines[2].startswith("| source | target | features |")  # the comparison table first
    assert any(line.startswith("| this run | emotion (4) | best, handcrafted |") for line in lines)
    assert "Human ceiling: not available" in md
    assert md.count("![confusion matrix](") == len(r["results"])
    assert "medium-knn (handcrafted, weights)" in md  # the skipped runs are named


def test_confusion_markdown_rows():
    conf = confusion(["a", "a", "b", "b", "b"], ["a", "b", "b", "b", "a"], ["a", "b"])
    per_class = {"a": {"precision": 0.5}, "b": {"precision": 2 / 3}}
    lines = rp.confusion_markdown(conf, per_class).splitlines()
    assert lines[0].startswith("| true \\ predicted | a | b | TPR | FNR | n |")
    cells = [c.strip() for c in lines[3].split("|")[1:-1]]
    assert cells == ["**b**", "33.3", "66.7", "66.7", "33.3", "3"]
    assert lines[-1].split("|")[2:4] == [" 50.0 ", " 66.7 "]


def test_confusion_figure_shows_percentages_and_rates():
    conf = confusion(list("aaabbc"), list("aabbbc"), ["a", "b", "c"])
    fig = rp.confusion_figure(conf, "title here")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "67%" in texts and "33%" in texts and "100%" in texts
    assert fig.axes[1].get_xticklabels()[0].get_text() == "TPR"
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["a (3)", "b (2)", "c (1)"]


def test_bar_figure_has_one_bar_per_result(class_report):
    r, _ = class_report
    fig = rp.bar_figure(r)
    ax = fig.axes[0]
    assert len(ax.patches) == len(r["results"])
    widths = [p.get_width() for p in ax.patches]
    np.testing.assert_allclose(widths, [100 * x["segment"]["accuracy"]["mean"] for x in r["results"]])
    assert any("random guess: 25.0" in t.get_text() for t in ax.get_legend().get_texts())


def test_console_table_is_ranked(class_report):
    r, _ = class_report
    console = Console(width=160, record=True)
    print_summary(r, console=console, top=3)
    text = console.export_text()
    ranks = re.findall(r"^│\s+(\d+) │", text, flags=re.MULTILINE)
    assert ranks == ["1", "2", "3"]
    assert "random guess 25.0%" in text
    assert "report.md" in text


def test_distribution_report(tmp_path):
    ds = build(make_arrays(n_tracks=16, n_segments=2))
    r = ev.run_evaluate(ds, features="handcrafted", target="distribution",
                        classifiers=["ridge-regression"], folds=4,
                        out=str(tmp_path), n_jobs=1)
    md = (tmp_path / "report.md").read_text()
    assert "train-mean baseline" in md and "JSD" in md
    assert (tmp_path / "classifiers.png").is_file()
    assert not list(tmp_path.glob("confusion_*.png"))
    jsd = r["results"][0]["distribution"]["jsd"]["mean"]
    assert f"{jsd:.4f}" in md
