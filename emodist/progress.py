"""Progress display for long work: done/total, elapsed, rate and ETA.

Used by the extraction driver (segments) and the evaluation driver (fits).
The bar goes to stderr so that tables printed on stdout stay clean.
"""

from __future__ import annotations

import contextlib
import time

__all__ = ["eta_seconds", "progress_bar", "run_rate"]


def run_rate(done: int, start: int, elapsed: float | None) -> float:
    """Items per second done by this run (``done - start`` over ``elapsed``)."""
    if not elapsed or elapsed <= 0:
        return 0.0
    return max(0, done - start) / elapsed


def eta_seconds(total: int, done: int, rate: float) -> float | None:
    """Seconds left at ``rate`` items/s (``None`` before any progress)."""
    return None if rate <= 0 else max(0, total - done) / rate


def progress_bar(enabled: bool, label: str = "segments", unit: str = "seg"):
    """A :class:`rich.progress.Progress` context, or a null context when disabled.

    Tasks added to it may carry a ``first`` field: the items already done
    before this run (a resumed extraction), which the rate leaves out.
    """
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    class RateEtaColumn(ProgressColumn):
        """Rate of this run since it started, and the time left at that rate."""

        def render(self, task):
            rate = run_rate(int(task.completed), int(task.fields.get("first", 0)), task.elapsed)
            eta = eta_seconds(int(task.total or 0), int(task.completed), rate)
            left = "-:--:--" if eta is None else time.strftime("%H:%M:%S", time.gmtime(eta))
            return Text(f"{rate:.1f} {unit}/s  ETA {left}")

    return Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        RateEtaColumn(), console=Console(stderr=True),
    )
