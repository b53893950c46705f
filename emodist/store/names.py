"""One-line errors for unknown names, with "did you mean" suggestions."""

from __future__ import annotations

import difflib

import numpy as np

from emodist.errors import EmodistError

__all__ = ["suggest", "unknown_name"]


def suggest(value: str, valid, n: int = 5) -> list[str]:
    """Valid names close to ``value`` (for "did you mean" messages).

    Long lists are first narrowed to their lexicographic neighbours of
    ``value``, so that this stays fast on a million segment ids.

    Parameters
    ----------
    value : str
        The unknown name.
    valid : sequence of str
        The known names.
    n : int
        Most suggestions.

    Returns
    -------
    list of str
    """
    pool = np.asarray([str(v) for v in valid], dtype=object)
    if len(pool) > 2000:
        pool = np.sort(pool)
        i = int(np.searchsorted(pool, value))
        pool = pool[max(0, i - 50): i + 50]
    return difflib.get_close_matches(value, list(pool), n=n, cutoff=0.5)


def unknown_name(kind: str, value: str, valid, plural: str | None = None) -> EmodistError:
    """The one-line error for an unknown track, label, feature...

    Parameters
    ----------
    kind : str
        What was looked up (``"track"``, ``"label"``...).
    value : str
        The unknown value.
    valid : sequence of str
        The values that exist.
    plural : str, optional
        Plural of ``kind`` (default ``kind + "s"``).

    Returns
    -------
    EmodistError
        To be raised by the caller.
    """
    plural = plural or f"{kind}s"
    valid = [str(v) for v in valid]
    close = suggest(value, valid)
    text = f"unknown {kind} {value!r}"
    if close:
        text += f"; did you mean {', '.join(close)}?"
    if len(valid) <= 12:
        text += f" valid {plural}: {', '.join(valid) or '(none)'}"
    elif not close:
        text += f"; valid {plural} include {', '.join(valid[:8])}, ... ({len(valid)} in all)"
    return EmodistError(text)
