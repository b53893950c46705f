"""Evaluation of a feature store: grouped cross-validation, scores, reports.

The driver is :func:`emodist.learn.evaluate.run_evaluate`; the module layout
and the order of imports are described in :mod:`emodist.learn.evaluate`.
"""
