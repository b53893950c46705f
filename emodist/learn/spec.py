"""What defines an evaluation's results: :class:`EvaluationSpec`.

An evaluation is defined by the feature sets, the presets, the folds and
their seed, the class weighting, the target, the label rule, the ranking
metric, the listener responses of the human ceiling and, for the streamed
evaluation, its model's passes, penalty and block size.  They are gathered
in one frozen :class:`EvaluationSpec`, checked once when it is made (one-line
errors naming the parameter, which the command line turns into its flag),
built by each front end (``emodist evaluate``, ``emodist run``) and recorded
in ``report.json`` under ``evaluation_spec`` (:meth:`EvaluationSpec.to_dict`;
:meth:`EvaluationSpec.from_dict` reads it back).  How a run goes -- joblib
processes or a Dask client, progress bars, storage options -- changes no
result and is not part of it.

The feature sets can only be resolved against a store; they are checked by
:func:`emodist.learn.data.resolve_feature_sets` when the store is opened.

The target is a classification target (:data:`TARGETS`), ``shares`` or
``tags`` (:data:`VOTE_TARGETS`), or a tuple of continuous target columns
(``("valence", "arousal")``); :func:`target_kind` says which kind of model
predicts it, and the presets are that kind's
(:mod:`emodist.learn.regression`, :mod:`emodist.learn.multilabel`).
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from dataclasses import dataclass
from typing import Any

from emodist.errors import EmodistError
from emodist.learn.multilabel import resolve_multilabel_presets
from emodist.learn.presets import Preset, resolve_distribution_presets, resolve_presets
from emodist.learn.regression import resolve_regression_presets
from emodist.spec import LABEL_RULES

__all__ = [
    "BALANCES",
    "BALANCE_MODES",
    "EVALUATION_TARGETS",
    "FOLD_SOURCES",
    "RANK_BY",
    "STREAM_BLOCK_BYTES",
    "STREAM_MODEL",
    "TARGETS",
    "TARGET_KINDS",
    "VOTE_TARGETS",
    "EvaluationSpec",
    "balance_modes",
    "check_choice",
    "check_target",
    "target_kind",
]

#: What is predicted: the dominant emotion, the dominant GEMS factor
#: (sublimity, vitality, unease), or the nine-way vote distribution.
TARGETS = ("class", "factors", "distribution")
#: Targets beyond one class per segment, read from the listener votes
#: (:mod:`emodist.learn.votes`): the 9 vote shares (regression), the top-three tags.
VOTE_TARGETS = ("shares", "tags")
#: Every target ``emodist evaluate --target`` takes.
EVALUATION_TARGETS = TARGETS + VOTE_TARGETS
#: Where the folds come from: drawn (grouped, stratified), or the dataset's published splits.
FOLD_SOURCES = ("grouped", "dataset")
#: Kinds of model: one class per segment (``class``, ``factors``), a distribution,
#: continuous values (``shares``, named columns), per-tag probabilities (``tags``).
TARGET_KINDS = ("class", "distribution", "regression", "multilabel")
#: Segment metrics the results can be ranked by.
RANK_BY = ("accuracy", "balanced_accuracy", "macro_f1")
#: Class weighting of a run; ``both`` evaluates each preset both ways.
BALANCES = ("none", "weights", "both")
#: Balance modes of one fit (``both`` expands into these).
BALANCE_MODES = ("none", "weights")
#: Uncompressed float32 bytes of one streamed block.
STREAM_BLOCK_BYTES = 64 * 2**20
#: The streamed model, as it appears in reports.
STREAM_MODEL = {"classifier": "sgd_stream", "name": "Streamed logistic regression (SGD)",
                "family": "linear"}


def check_choice(param: str, value, choices, what: str | None = None) -> None:
    """Raise unless ``value`` is one of ``choices``.

    Parameters
    ----------
    param : str
        The parameter's name (the error's ``param``).
    value : object
        The given value.
    choices : sequence of str
        The allowed values.
    what : str, optional
        The parameter in words (default: ``param`` with spaces).

    Raises
    ------
    emodist.errors.EmodistError
        ``"unknown <what> <value>; use <choices>"``, ``param=param``.
    """
    if value not in choices:
        raise EmodistError(
            f"unknown {what or param.replace('_', ' ')} {value!r}; use {', '.join(choices)}",
            param=param,
        )


def check_target(target) -> str | tuple[str, ...]:
    """A target as a spec keeps it: one of :data:`EVALUATION_TARGETS`, or a tuple of column names.

    Parameters
    ----------
    target : str or sequence of str
        ``class``, ``factors``, ``distribution``, ``shares``, ``tags``, or
        continuous target columns (emotions, per-segment numeric store
        variables or numeric columns of the store's dataset catalog,
        ``["valence", "arousal"]``: :func:`emodist.learn.votes.column_targets`);
        a one-name sequence of a named target is that target.

    Returns
    -------
    str or tuple of str

    Raises
    ------
    emodist.errors.EmodistError
        (parameter ``target``) no name, a name that is not text, or a named
        target mixed with columns.
    """
    names = (target,) if isinstance(target, str) else tuple(target) if target is not None else ()
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise EmodistError(f"give a target: {', '.join(EVALUATION_TARGETS)} or continuous columns "
                           f"(got {target!r})", param="target")
    if len(names) == 1 and names[0] in EVALUATION_TARGETS:
        return names[0]
    named = [n for n in names if n in EVALUATION_TARGETS]
    if named:
        raise EmodistError(f"{named[0]} is a target of its own, not a column to predict beside "
                           f"{', '.join(n for n in names if n != named[0])}", param="target")
    return names


def target_kind(target) -> str:
    """What kind of model predicts ``target`` (:data:`TARGET_KINDS`).

    Examples
    --------
    >>> [target_kind(t) for t in ("factors", "distribution", "shares", "tags", ("valence",))]
    ['class', 'distribution', 'regression', 'multilabel', 'regression']
    """
    target = check_target(target)
    if target in TARGETS:
        return "distribution" if target == "distribution" else "class"
    return "multilabel" if target == "tags" else "regression"


def balance_modes(balance: str) -> list[str]:
    """The balance modes of one run.

    Parameters
    ----------
    balance : {"none", "weights", "both"}

    Returns
    -------
    list of str
        ``both`` -> ``["none", "weights"]``; otherwise ``[balance]``.
    """
    check_choice("balance", balance, BALANCES)
    return list(BALANCE_MODES) if balance == "both" else [balance]


def _integer(param: str, value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or int(value) != value:
        raise EmodistError(f"{what} must be a whole number, got {value!r}", param=param)
    return int(value)


def _names(param: str, value) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = (value,) if isinstance(value, str) else tuple(value)
    if not all(isinstance(v, str) for v in names):
        raise EmodistError(f"give names as text, got {list(names)!r}", param=param)
    return names or None


@dataclass(frozen=True)
class EvaluationSpec:
    """Every setting that changes an evaluation's results, checked once.

    Parameters
    ----------
    features : str, sequence of str or None
        Feature-set spec (:func:`emodist.learn.data.resolve_feature_sets`):
        group names, ``+``-joined group names, feature names / glob
        patterns.  ``None``: every stored group alone, and all of them
        joined.  Kept as given (a tuple): only a store resolves it.
    classifiers : str, sequence of str or None
        Preset keys or names; ``"all"`` / ``"quick"`` / ``"beyond"`` are
        shorthands (:func:`emodist.learn.presets.resolve_presets`); for
        ``target="distribution"`` the distribution presets.  ``None``:
        ``all``.  Stored resolved: the tuple of preset keys.  A streamed
        evaluation has one model (``("sgd_stream",)``) and takes none.
    folds : int
        Number of grouped folds (at least 2).
    seed : int
        Seed of the folds and of every model.
    balance : {"none", "weights", "both"}
        Class weighting; ``both`` evaluates each preset both ways.
    target : str or tuple of str
        What is predicted: ``class``, ``factors``, ``distribution``
        (:mod:`emodist.learn.targets`), ``shares``, ``tags`` or continuous
        columns (:mod:`emodist.learn.votes`); :func:`check_target`.
    label_rule : {"listener", "mean"} or None
        ``None`` uses the stored labels.
    rank_by : {"accuracy", "balanced_accuracy", "macro_f1"}
        Segment metric (fold mean) the results are ranked by.
    ceiling : str, path-like, False or None
        Listener responses for the human ceiling
        (:func:`emodist.learn.ceiling.human_ceiling`): an Emotify
        ``data.csv`` or its folder; ``None``: the store's ``dataset``
        attribute when it names an Emotify folder; ``False``: not computed.
    stream : bool
        The streamed evaluation (:mod:`emodist.learn.stream`): one linear
        model, fit block by block; class target and stored labels only.
    epochs : int
        Streamed: passes of ``partial_fit`` over the training rows.
    alpha : float
        Streamed: L2 penalty of the SGD model.
    block_bytes : int
        Streamed: uncompressed feature bytes read per block (the blocks'
        seeded row orders depend on it).
    group_by : str or None
        The per-track column the folds are grouped by (``album``, ``genre``,
        a column of the store's dataset catalog:
        :func:`emodist.learn.tracks.column_values`); ``None``: the store's
        ``group``, else the track.  Recordings stored twice stay in one group.
    fold_source : {"grouped", "dataset"}
        ``grouped``: ``folds`` grouped, stratified folds
        (:func:`emodist.learn.folds.make_folds`); ``dataset``: the dataset's
        published splits, each split's test part scored by a model trained on
        its training part (:func:`emodist.learn.tracks.published_splits`;
        ``folds`` is then unused).

    Raises
    ------
    emodist.errors.EmodistError
        A setting with an unusable value; ``param`` names it.

    Examples
    --------
    >>> spec = EvaluationSpec(classifiers="quick", folds=4)
    >>> spec.classifiers
    ('linear-svm', 'medium-knn', 'bagged-trees', 'logistic-regression')
    >>> EvaluationSpec.from_dict(spec.to_dict()) == spec
    True
    """

    features: tuple[str, ...] | None = None
    classifiers: tuple[str, ...] | None = None
    folds: int = 5
    seed: int = 0
    balance: str = "none"
    target: str | tuple[str, ...] = "class"
    label_rule: str | None = None
    rank_by: str = "accuracy"
    ceiling: str | bool | None = None
    stream: bool = False
    epochs: int = 5
    alpha: float = 1e-4
    block_bytes: int = STREAM_BLOCK_BYTES
    group_by: str | None = None
    fold_source: str = "grouped"

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", check_target(self.target))
        check_choice("rank_by", self.rank_by, RANK_BY, "ranking metric")
        check_choice("balance", self.balance, BALANCES)
        if self.label_rule is not None:
            check_choice("label_rule", self.label_rule, LABEL_RULES)
        folds = _integer("folds", self.folds, "the number of folds")
        if folds < 2:
            raise EmodistError(f"the number of folds must be at least 2, got {folds}", param="folds")
        ceiling = os.fspath(self.ceiling) if isinstance(self.ceiling, os.PathLike) else self.ceiling
        if not (ceiling is None or ceiling is False or isinstance(ceiling, str)):
            raise EmodistError(f"give a path, or False to skip it; got {ceiling!r}", param="ceiling")
        epochs = _integer("epochs", self.epochs, "epochs")
        if epochs < 1:
            raise EmodistError(f"epochs must be at least 1, got {epochs}", param="epochs")
        block_bytes = _integer("block_bytes", self.block_bytes, "the block size")
        if block_bytes < 1:
            raise EmodistError(f"the block size must be positive, got {block_bytes}", param="block_bytes")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, numbers.Real) or not self.alpha > 0:
            raise EmodistError(f"the penalty must be positive, got {self.alpha!r}", param="alpha")
        classifiers = _names("classifiers", self.classifiers)
        self._check_folds_source()
        if self.stream:
            for param, value in (("classifiers", classifiers), ("label_rule", self.label_rule),
                                 ("ceiling", ceiling)):
                if value not in (None, False, (STREAM_MODEL["classifier"],)):
                    raise EmodistError("not with a streamed evaluation (it fits one streamed linear "
                                       "model on the stored labels)", param=param)
            if self.target != "class":
                raise EmodistError("a streamed evaluation predicts the dominant emotion (class) only",
                                   param="target")
            keys = (STREAM_MODEL["classifier"],)
        else:
            keys = tuple(p.key for p in self._resolve(classifiers or ("all",)))
        fields = {"features": _names("features", self.features), "classifiers": keys,
                  "folds": folds, "seed": _integer("seed", self.seed, "the seed"), "ceiling": ceiling,
                  "stream": bool(self.stream), "epochs": epochs, "alpha": float(self.alpha),
                  "block_bytes": block_bytes}
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def _check_folds_source(self) -> None:
        check_choice("fold_source", self.fold_source, FOLD_SOURCES, "fold source")
        if self.group_by is not None and not (isinstance(self.group_by, str) and self.group_by.strip()):
            raise EmodistError(f"give a column name, got {self.group_by!r}", param="group_by")
        if self.fold_source == "dataset":
            if self.group_by is not None:
                raise EmodistError("not with the dataset's published splits (they fix every "
                                   "track's part)", param="group_by")
            if self.target == "distribution":
                raise EmodistError("the dataset's published splits score one class per segment "
                                   "(class or factors)", param="target")
        if self.stream and (self.group_by is not None or self.fold_source != "grouped"):
            raise EmodistError("not with a streamed evaluation (it groups by the store's group)",
                               param="group_by" if self.group_by is not None else "fold_source")

    def _resolve(self, names) -> list:
        kind = self.kind
        if kind == "regression":
            return resolve_regression_presets(list(names))
        if kind == "multilabel":
            return resolve_multilabel_presets(list(names))
        if kind == "distribution":
            return resolve_distribution_presets(list(names))
        return resolve_presets(list(names))

    @property
    def kind(self) -> str:
        """The kind of model the target needs (:func:`target_kind`)."""
        return target_kind(self.target)

    @property
    def presets(self) -> list[Preset]:
        """The presets evaluated, in order (none for a streamed evaluation).

        Regression and multi-label targets: that kind's presets
        (:class:`~emodist.learn.regression.RegressionPreset`,
        :class:`~emodist.learn.multilabel.MultilabelPreset`).
        """
        return [] if self.stream else self._resolve(self.classifiers)

    @property
    def balance_modes(self) -> list[str]:
        """The balance modes of each preset (:func:`balance_modes`)."""
        return balance_modes(self.balance)

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON values (``report.json``'s ``evaluation_spec``).

        Returns
        -------
        dict
            One entry per field; tuples become lists.
        """
        return {f.name: (list(v) if isinstance(v, tuple) else v)
                for f in dataclasses.fields(self) for v in [getattr(self, f.name)]}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EvaluationSpec:
        """The spec recorded by :meth:`to_dict` (checked again).

        Parameters
        ----------
        values : dict
            Field name -> value; a name that is no field is refused.

        Returns
        -------
        EvaluationSpec

        Raises
        ------
        emodist.errors.EmodistError
            An unknown field (``param="evaluation_spec"``) or an unusable value.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise EmodistError(f"unknown evaluation setting {unknown[0]!r}; use {', '.join(sorted(known))}",
                               param="evaluation_spec")
        return cls(**values)

    def replace(self, **changes: Any) -> EvaluationSpec:
        """Copy with some fields changed (checked again)."""
        return dataclasses.replace(self, **changes)
