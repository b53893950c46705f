"""Grouped cross-validation, classifiers, targets beyond one label, the human ceiling, reports."""
