"""Parameters of an evaluation run and the error that names a bad one.

Every check of a user-given evaluation parameter raises
:class:`ParameterError`, whose :attr:`~ParameterError.parameter` says which
parameter of :func:`emodist.learn.evaluate.run_evaluate` was wrong
(``"folds"``, ``"features"``, ...).  The message names the problem in words
and carries the offending value; a front end (the command line) adds its own
name for the parameter.  This module imports nothing from the rest of
:mod:`emodist.learn`.
"""

from __future__ import annotations

from emodist.errors import EmodistError

#: What is predicted: the dominant emotion, the dominant GEMS factor
#: (sublimity, vitality, unease), or the nine-way vote distribution.
TARGETS = ("class", "factors", "distribution")
#: Segment metrics the results can be ranked by.
RANK_BY = ("accuracy", "balanced_accuracy", "macro_f1")
#: Class weighting of a run; ``both`` evaluates each preset both ways.
BALANCES = ("none", "weights", "both")
#: Balance modes of one fit (``both`` expands into these).
BALANCE_MODES = ("none", "weights")


class ParameterError(EmodistError):
    """A parameter of an evaluation run with an unusable value.

    Parameters
    ----------
    message : str
        One line naming the problem and the offending value.
    parameter : str
        The parameter's name in :func:`emodist.learn.evaluate.run_evaluate`.
    """

    def __init__(self, message: str, parameter: str):
        super().__init__(message, param=parameter)
        self.parameter = parameter


def check_choice(parameter: str, value, choices, what: str | None = None) -> None:
    """Raise :class:`ParameterError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ParameterError(
            f"unknown {what or parameter.replace('_', ' ')} {value!r}; use {', '.join(choices)}",
            parameter,
        )


def balance_modes(balance: str) -> list[str]:
    """The balance modes of one run: ``both`` -> ``["none", "weights"]``."""
    check_choice("balance", balance, BALANCES)
    return list(BALANCE_MODES) if balance == "both" else [balance]
