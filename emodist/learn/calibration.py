"""How far predicted probabilities can be taken at their word: reliability and ECE.

A user who asks for "songs with calmness >= 0.6" relies on a probability of
0.6 meaning about 60%.  From out-of-fold probabilities (each row predicted by
a model that never saw its track) this module measures that:

* :func:`reliability`: equal-width bins of a predicted probability, with the
  mean prediction, the observed rate (or mean vote share) and the count of
  each bin, and the expected calibration error
  ``ECE = sum_b n_b / N |observed_b - predicted_b|`` (Guo et al., 2017);
* :func:`calibration_report`: the top-label ECE (confidence of the predicted
  class against its accuracy) and the class-wise ECE (every class's
  probability against whether the row is that class, or against the row's
  vote share for that emotion when the target is a distribution), averaged
  over classes;
* :func:`reliability_figure`: the reliability diagram as PNG bytes.
"""

from __future__ import annotations

import io

import numpy as np

__all__ = ["N_BINS", "calibration_report", "reliability", "reliability_figure"]

#: Equal-width probability bins.
N_BINS = 10


def reliability(predicted, observed, *, n_bins: int = N_BINS) -> dict:
    """Reliability bins and expected calibration error of one probability.

    Parameters
    ----------
    predicted : array_like, shape (n,)
        Predicted probabilities in [0, 1].
    observed : array_like, shape (n,)
        What happened: 0/1 outcomes, or shares in [0, 1].
    n_bins : int
        Equal-width bins over [0, 1] (the last one closed).

    Returns
    -------
    dict
        ``ece``; ``bins``: one entry per non-empty bin with ``lower``,
        ``upper``, ``count``, ``predicted`` (mean) and ``observed`` (mean).
    """
    p = np.clip(np.asarray(predicted, dtype=np.float64).ravel(), 0.0, 1.0)
    o = np.asarray(observed, dtype=np.float64).ravel()
    idx = np.minimum((p * n_bins).astype(int), n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        m = idx == b
        if not m.any():
            continue
        mp, mo = float(p[m].mean()), float(o[m].mean())
        ece += m.sum() / len(p) * abs(mo - mp)
        bins.append({"lower": b / n_bins, "upper": (b + 1) / n_bins, "count": int(m.sum()),
                     "predicted": mp, "observed": mo})
    return {"ece": float(ece), "bins": bins}


def calibration_report(proba, target, classes, *, n_bins: int = N_BINS) -> dict:
    """Top-label and class-wise calibration of out-of-fold probabilities.

    Parameters
    ----------
    proba : array_like, shape (n, k)
        Out-of-fold probabilities, columns ``classes``.
    target : array_like, shape (n,) of labels, or (n, k) of shares
        True classes (top-label and class-wise against 0/1), or each row's
        target distribution (class-wise against the shares; top-label
        against whether the predicted emotion is the most voted one).
    classes : sequence of str
    n_bins : int

    Returns
    -------
    dict
        ``ece`` and ``top_label`` (bins) of the predicted class;
        ``classwise_ece`` (mean over classes) and ``per_class``
        (class -> ``ece`` and ``bins``); ``n_bins``; ``n``.
    """
    P = np.asarray(proba, dtype=np.float64)
    T = np.asarray(target)
    if T.ndim == 1:
        onehot = (T[:, None] == np.asarray(classes, dtype=object)[None, :]).astype(np.float64)
        truth = onehot
    else:
        truth = T.astype(np.float64)
        onehot = (np.argmax(truth, axis=1)[:, None] == np.arange(truth.shape[1])[None, :]).astype(float)
    top = np.argmax(P, axis=1)
    rows = np.arange(len(P))
    top_label = reliability(P[rows, top], onehot[rows, top], n_bins=n_bins)
    per_class = {str(c): reliability(P[:, j], truth[:, j], n_bins=n_bins) for j, c in enumerate(classes)}
    return {
        "ece": top_label["ece"],
        "top_label": top_label["bins"],
        "classwise_ece": float(np.mean([v["ece"] for v in per_class.values()])),
        "per_class": per_class,
        "n_bins": int(n_bins),
        "n": len(P),
    }


def reliability_figure(report: dict, *, title: str = "") -> bytes:
    """The reliability diagram of :func:`calibration_report` as PNG bytes.

    Left: the predicted class's confidence against its accuracy; right:
    every class's probability against the observed rate (one line per
    class).  Marker area follows the bin's count; the diagonal is perfect
    calibration.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), constrained_layout=True)
    panels = [(axes[0], {"top label": report["top_label"]}, f"top label, ECE {report['ece']:.3f}"),
              (axes[1], {c: v["bins"] for c, v in report["per_class"].items()},
               f"per class, mean ECE {report['classwise_ece']:.3f}")]
    n = max(1, report["n"])
    for ax, series, label in panels:
        ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--")
        for name, bins in series.items():
            x = [b["predicted"] for b in bins]
            y = [b["observed"] for b in bins]
            s = [12 + 400 * b["count"] / n for b in bins]
            ax.plot(x, y, lw=1, label=name)
            ax.scatter(x, y, s=s, alpha=0.6)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("predicted probability (bin mean)")
        ax.set_ylabel("observed rate")
        ax.set_title(label)
        if len(series) > 1:
            ax.legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
