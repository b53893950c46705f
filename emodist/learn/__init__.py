"""Grouped cross-validation, classifiers, targets beyond one label, the human ceiling, reports.

Modules, by concept: :mod:`~emodist.learn.spec` (what defines an
evaluation), :mod:`~emodist.learn.data` (the store's feature matrices),
:mod:`~emodist.learn.targets` (what is predicted),
:mod:`~emodist.learn.folds` (the folds), :mod:`~emodist.learn.estimators`
and :mod:`~emodist.learn.presets` (the models), :mod:`~emodist.learn.runs`
(the fits), :mod:`~emodist.learn.scoring` (the metrics),
:mod:`~emodist.learn.ceiling` (the human ceiling),
:mod:`~emodist.learn.evaluate` and :mod:`~emodist.learn.stream` (the two
evaluations), :mod:`~emodist.learn.report` (reports and their comparison).
"""

__all__: list[str] = []
