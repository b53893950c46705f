"""User-facing errors.

Every problem caused by the user's input (a missing file, a malformed CSV, an
unknown feature name, an unreachable scheduler, ...) is raised as an
:class:`EmodistError`.  The command-line interface prints its message as one
line and exits with status 2; library users catch it like any exception.
"""

from __future__ import annotations

__all__ = ["ClusterError", "DataError", "EmodistError", "ModelError", "StoreError"]


class EmodistError(Exception):
    """A problem with the user's input, reported as one line.

    Parameters
    ----------
    message : str
        One line that names the problem (the file, column, name, address...).
    param : str, optional
        The parameter at fault (``"scheduler"``, ``"folds"``...); the command
        line turns it into the flag that sets it.
    """

    exit_code = 2

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message


class DataError(EmodistError):
    """Malformed or missing dataset input (CSV, audio, manifest)."""


class StoreError(EmodistError):
    """A feature store that is missing, of the wrong layout or config."""


class ModelError(EmodistError):
    """A missing, corrupt or mismatching ONNX model."""


class ClusterError(EmodistError):
    """A Dask scheduler that cannot be reached or used."""
