"""A fitted preset pipeline as an ONNX graph, and emodist's estimators as ONNX operators.

:func:`to_onnx` converts a fitted :func:`~emodist.learn.presets.make_pipeline`
pipeline with :mod:`skl2onnx`: the graph takes a ``float32`` matrix named
:data:`INPUT_NAME` (one row per segment, the feature columns in the card's
order), casts it to ``float64`` and computes everything in double precision,
so that its class probabilities agree with scikit-learn's ``predict_proba``
on the same rows to about 1e-12 (trees compare in ``float32``, as
scikit-learn does).  The outputs are the predicted label and the class
probabilities as a plain ``(n, k)`` matrix (``zipmap=False``).

scikit-learn's own steps (scaling, logistic regression, random forests,
k-nearest neighbours, bagging, ...) use skl2onnx's converters; emodist's
estimators get theirs here, each built from ONNX operators
(:func:`register_converters`):

* :class:`~emodist.learn.soft.SoftLogisticRegression`: standardisation
  folded into one linear layer, then a softmax;
  :class:`~emodist.learn.tuning.InFoldSoftLogisticRegression`: its refit
  model;
* :class:`~emodist.learn.soft.SoftLabelClassifier`: the base model's
  probabilities, columns placed by a selection matrix;
* :class:`~emodist.learn.imbalance.PriorShiftClassifier`: the base model's
  log-probabilities plus constant offsets, then a softmax;
* :class:`~emodist.learn.imbalance.BalancedBaggingClassifier`: the mean of
  its members' probabilities;
* :class:`~emodist.learn.estimators.ClippedKNN`: scikit-learn's
  k-nearest-neighbour graph with the clipped neighbour count;
* :class:`~emodist.learn.reduce.WideInputPCA`: the PCA projection, or the
  identity for narrow inputs.

Models without class probabilities (the SVMs, RUSBoost) are not exported: a
user thresholds on probabilities.  Nor are weighted KNN (a Python weight
function) and histogram gradient boosting classifiers (skl2onnx 1.20 cannot
write their trees).  :data:`EXPORTABLE` lists the presets
whose export is tested to agree with scikit-learn.

Continuous and multi-label targets (:mod:`emodist.learn.regression`,
:mod:`emodist.learn.multilabel`) are exported by :func:`regression_to_onnx`
and :func:`multilabel_to_onnx`:

* a regression model is one fitted pipeline per target column
  (:class:`ColumnRegressors`); the graph runs each pipeline's steps on the
  same input and concatenates their predictions into one ``(n, n_targets)``
  output, ``values``.  The Gaussian SVR
  (:class:`~emodist.learn.regression.ScaledGaussianSVR`) is scikit-learn's
  RBF kernel expansion in double precision (ONNX Runtime's SVM operator
  takes no doubles) and the affine map back to the target's scale; a
  rescaled model (:class:`~emodist.learn.regression.Rescaled`) is its
  model's graph followed by its affine map; forests
  compare ``float32`` inputs, as scikit-learn's do.  Histogram gradient
  boosting is not exported: skl2onnx 1.20 writes its trees wrongly for
  scikit-learn 1.9 (:data:`REGRESSION_EXPORTABLE` lists what is).  A
  multi-output model (``softmax-shares``:
  :class:`~emodist.learn.regression.SoftmaxShares`, one model for all the
  shares) is one linear layer and a softmax, and fills as many columns as
  it predicts;
* a multi-label model is a pipeline whose outputs are a 0/1 ``label``
  matrix (probability at least 0.5) and the per-tag ``probabilities``;
  one-vs-rest models use skl2onnx's converters, the multi-layer perceptron
  is written here as its layers and a sigmoid per tag
  (:data:`MULTILABEL_EXPORTABLE`).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper
from skl2onnx import convert_sklearn, update_registered_converter
from skl2onnx.algebra.onnx_operator import OnnxSubEstimator
from skl2onnx.algebra.onnx_ops import (
    OnnxAdd,
    OnnxArgMax,
    OnnxArrayFeatureExtractor,
    OnnxCast,
    OnnxConcat,
    OnnxDiv,
    OnnxExp,
    OnnxGreaterOrEqual,
    OnnxIdentity,
    OnnxLog,
    OnnxMatMul,
    OnnxMul,
    OnnxReduceSum,
    OnnxRelu,
    OnnxReshape,
    OnnxSigmoid,
    OnnxSoftmax,
    OnnxSum,
    OnnxTanh,
)
from skl2onnx.common.data_types import (
    DoubleTensorType,
    FloatTensorType,
    Int64TensorType,
    guess_numpy_type,
)
from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
from skl2onnx.operator_converters.nearest_neighbours import convert_nearest_neighbors_classifier
from skl2onnx.shape_calculators.scaler import calculate_sklearn_scaler_output_shapes
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.ensemble import BaggingClassifier, BaseEnsemble, HistGradientBoostingClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.tree import BaseDecisionTree

from emodist.errors import EmodistError
from emodist.learn.estimators import (
    LOG_EPS,
    BalancedBaggingClassifier,
    ClippedKNN,
    InFoldSoftLogisticRegression,
    PriorShiftClassifier,
    SoftLabelClassifier,
    SoftLogisticRegression,
    WideInputPCA,
)
from emodist.learn.regression import Rescaled, ScaledGaussianSVR, SoftmaxShares

__all__ = [
    "EXPORTABLE",
    "EXPORTABLE_DISTRIBUTION",
    "INPUT_NAME",
    "MULTILABEL_EXPORTABLE",
    "OPSET",
    "REGRESSION_EXPORTABLE",
    "ColumnRegressors",
    "check_exportable",
    "exportable",
    "multilabel_to_onnx",
    "onnx_outputs",
    "register_converters",
    "regression_to_onnx",
    "run_onnx",
    "to_onnx",
]

#: Name of the graph's input: ``float32``, shape ``(n, n_features)``.
INPUT_NAME = "features"
#: Opsets of the exported graphs (ONNX Runtime 1.20 runs them).
OPSET = {"": 18, "ai.onnx.ml": 3}
#: Class presets whose ONNX export agrees with scikit-learn (``target`` class or factors).
EXPORTABLE = (
    "soft-logistic-regression",
    "soft-logistic-regression-in-fold-c",
    "logistic-regression",
    "prior-shift-logistic-regression",
    "prior-shift-soft-logistic-regression",
    "prior-shift-subspace-discriminant",
    "balanced-bagged-soft-logistic-regression",
    "balanced-bagged-trees",
    "soft-bagged-trees",
    "bagged-trees",
    "subspace-discriminant",
    "subspace-knn",
    "boosted-trees",
    "fine-knn",
    "medium-knn",
    "coarse-knn",
    "cosine-knn",
    "cubic-knn",
)
#: Distribution presets whose ONNX export agrees with scikit-learn.
EXPORTABLE_DISTRIBUTION = (
    "soft-logistic-regression-in-fold-c",
    "soft-logistic-regression-in-fold-c-track-mean",
)
#: Regression presets (:data:`emodist.learn.regression.REGRESSION_PRESETS`) whose
#: ONNX export agrees with scikit-learn (continuous targets).
REGRESSION_EXPORTABLE = (
    "ridge",
    "ridge-rescaled",
    "softmax-shares",
    "gaussian-svr",
    "knn",
    "bagged-trees",
    "pls",
)
#: Multi-label presets (:data:`emodist.learn.multilabel.MULTILABEL_PRESETS`) whose
#: ONNX export agrees with scikit-learn (``tags``).
MULTILABEL_EXPORTABLE = ("logistic-regression", "linear-svm", "mlp")
_ZIPMAP = {"zipmap": [False, True], "nocl": [False, True]}


def exportable(kind: str) -> tuple[str, ...]:
    """The presets whose export is tested for a kind of target.

    Parameters
    ----------
    kind : {"class", "factors", "distribution", "regression", "multilabel"}

    Returns
    -------
    tuple of str
    """
    return {"distribution": EXPORTABLE_DISTRIBUTION, "regression": REGRESSION_EXPORTABLE,
            "multilabel": MULTILABEL_EXPORTABLE}.get(kind, EXPORTABLE)


def check_exportable(preset_key: str, target: str = "class") -> None:
    """Raise unless the preset can be written as ONNX for ``target``.

    Parameters
    ----------
    preset_key : str
    target : str
        A classification target (``class``, ``factors``, ``distribution``)
        or a kind (``regression``, ``multilabel``).

    Raises
    ------
    EmodistError
        (parameter ``classifier``) one line naming the presets that can.
    """
    allowed = exportable(target)
    if preset_key not in allowed:
        raise EmodistError(f"{preset_key!r} cannot be exported as ONNX for target {target}; "
                             f"choose from {', '.join(allowed)}", param="classifier")


# --------------------------------------------------------------------------
# Converters of emodist's estimators.
# --------------------------------------------------------------------------


def _emit(scope, operator, container, proba) -> None:
    """Write the label (argmax over ``classes_``) and probability outputs of ``proba``."""
    opv = container.target_opset
    out = operator.outputs
    classes = np.asarray(operator.raw_operator.classes_)
    if classes.dtype.kind in "iu":
        classes = classes.astype(np.int64)
    elif classes.dtype.kind != "b":
        classes = np.array([str(c) for c in classes])
    prob = OnnxIdentity(proba, op_version=opv, output_names=[out[1]])
    top = OnnxArgMax(prob, axis=1, keepdims=0, op_version=opv)
    label = OnnxReshape(OnnxArrayFeatureExtractor(classes, top, op_version=opv),
                        np.array([-1], dtype=np.int64), op_version=opv, output_names=[out[0]])
    prob.add_to(scope, container)
    label.add_to(scope, container)


def _compares_float32(model) -> bool:
    """Whether scikit-learn casts the model's input to ``float32`` (decision trees and their ensembles)."""
    return isinstance(model, (BaseDecisionTree, BaseEnsemble, HistGradientBoostingClassifier)) and \
        not isinstance(model, BaggingClassifier)


class Float32Input(ClassifierMixin, BaseEstimator):
    """A fitted tree model whose ONNX graph gets its input as ``float32``, as scikit-learn does.

    Only for conversion (:func:`to_onnx` puts it in place of the pipeline's
    last step): scikit-learn's trees compare ``float32`` inputs, so the graph
    casts the double-precision output of the steps before them.
    """

    def __init__(self, model):
        self.model = model
        self.classes_ = model.classes_


def _convert_float32_input(scope, operator, container):
    op, X, dtype, opv = _parts(operator, container)
    _emit(scope, operator, container, _sub_proba(op.model, X, opv, op.classes_, dtype))


def _sub_proba(model, X, opv, classes, dtype):
    """A fitted sub-model's probabilities, columns ``classes`` (0 for a class it lacks).

    The ONNX form of :func:`emodist.learn.cv.aligned_proba`: the columns are
    placed by a constant selection matrix.
    """
    if _compares_float32(model):
        X32 = OnnxCast(X, to=TensorProto.FLOAT, op_version=opv)
        p32 = OnnxSubEstimator(model, X32, op_version=opv, options={"zipmap": False},
                               input_types=[FloatTensorType([None, model.n_features_in_])])[1]
        p = OnnxCast(p32, to=_PROTO[np.dtype(dtype)], op_version=opv)
    else:
        p = OnnxSubEstimator(model, X, op_version=opv, options={"zipmap": False})[1]
    own = list(np.asarray(model.classes_).tolist())
    want = list(np.asarray(classes).tolist())
    if own == want:
        return p
    select = np.zeros((len(own), len(want)), dtype=dtype)
    for j, c in enumerate(own):
        if c in want:
            select[j, want.index(c)] = 1.0
    return OnnxMatMul(p, select, op_version=opv)


def _parts(operator, container):
    """The fitted model, the input variable, its numpy dtype and the opset of a converter call."""
    X = operator.inputs[0]
    return operator.raw_operator, X, guess_numpy_type(X.type), container.target_opset


def _soft_lr(op: SoftLogisticRegression, X, opv, dtype):
    """A fitted soft-label logistic regression's probabilities: one linear layer, a softmax."""
    W = (op.coef_ / op.scale_[None, :]).T  # (d, k): standardisation folded in
    b = op.intercept_ - (op.mean_ / op.scale_) @ op.coef_.T
    logits = OnnxAdd(OnnxMatMul(X, W.astype(dtype), op_version=opv), b.astype(dtype), op_version=opv)
    return OnnxSoftmax(logits, axis=1, op_version=opv)


def _convert_soft_lr(scope, operator, container):
    op, X, dtype, opv = _parts(operator, container)
    if isinstance(op, InFoldSoftLogisticRegression):
        op = op.estimator_
    _emit(scope, operator, container, _soft_lr(op, X, opv, dtype))


def _convert_soft_label(scope, operator, container):
    op, X, dtype, opv = _parts(operator, container)
    # the base model learns class indices: column j of its output is class j
    _emit(scope, operator, container,
          _sub_proba(op.estimator_, X, opv, np.arange(len(op.classes_)), dtype))


def _convert_prior_shift(scope, operator, container):
    op, X, dtype, opv = _parts(operator, container)
    p = _sub_proba(op.estimator_, X, opv, op.classes_, dtype)
    logp = OnnxLog(OnnxAdd(p, np.array([LOG_EPS], dtype=dtype), op_version=opv), op_version=opv)
    shifted = OnnxAdd(logp, op.offsets_.astype(dtype), op_version=opv)
    _emit(scope, operator, container, OnnxSoftmax(shifted, axis=1, op_version=opv))


def _convert_balanced_bagging(scope, operator, container):
    op, X, dtype, opv = _parts(operator, container)
    if not all(hasattr(m, "predict_proba") for m in op.estimators_):
        raise ValueError("balanced bagging of members without probabilities; cannot export")
    members = [_sub_proba(m, X, opv, op.classes_, dtype) for m in op.estimators_]
    total = OnnxSum(*members, op_version=opv) if len(members) > 1 else members[0]
    mean = OnnxDiv(total, np.array([len(members)], dtype=dtype), op_version=opv)
    _emit(scope, operator, container, mean)


def _convert_clipped_knn(scope, operator, container):
    op = operator.raw_operator
    requested = op.n_neighbors
    op.n_neighbors = op.n_neighbors_used_
    try:
        convert_nearest_neighbors_classifier(scope, operator, container)
    finally:
        op.n_neighbors = requested


def _shape_wide_pca(operator):
    op = operator.raw_operator
    calculate_sklearn_scaler_output_shapes(operator)
    width = op.n_features_in_ if op.pca_ is None else op.pca_.n_components_
    operator.outputs[0].type = operator.inputs[0].type.__class__([None, int(width)])


def _convert_wide_pca(scope, operator, container):
    op = operator.raw_operator
    X = operator.inputs[0]
    opv = container.target_opset
    out = operator.outputs[0]
    if op.pca_ is None:
        node = OnnxIdentity(X, op_version=opv, output_names=[out])
    else:
        node = OnnxIdentity(OnnxSubEstimator(op.pca_, X, op_version=opv), op_version=opv,
                            output_names=[out])
    node.add_to(scope, container)

# --------------------------------------------------------------------------
# Continuous and multi-label targets.
# --------------------------------------------------------------------------


class ColumnRegressors(RegressorMixin, BaseEstimator):
    """Fitted regression pipelines, one per target column, predicting side by side.

    What ``emodist train`` fits for continuous targets (each column tuned
    and fit on its own, as ``emodist evaluate`` does by default) and what
    :func:`regression_to_onnx` converts.

    Parameters
    ----------
    estimators : sequence of sklearn.pipeline.Pipeline
        Fitted :meth:`~emodist.learn.regression.RegressionPreset.pipeline`
        pipelines, in target-column order; a multi-output pipeline
        (``softmax-shares``) fills as many columns as it predicts.
    """

    def __init__(self, estimators=()):
        self.estimators = estimators

    def fit(self, X, y=None):
        """Nothing to fit: the pipelines come fitted."""
        return self

    def predict(self, X) -> np.ndarray:
        """Every column's prediction, ``(n, n_targets)`` float64."""
        X = np.asarray(X, dtype=np.float64)
        return np.column_stack([np.asarray(e.predict(X), dtype=np.float64).reshape(len(X), -1)
                                for e in self.estimators])


def _gaussian_svr(model: ScaledGaussianSVR, X, opv, dtype):
    """The SVR's kernel expansion in double precision, mapped back to the target's scale.

    ``sum_i a_i exp(-gamma ||x - s_i||^2) + b`` with ``||x - s||^2 = x.x -
    2 x.s + s.s`` (ONNX Runtime's SVM operator takes no doubles).
    """
    svr = model.svr_
    S = np.asarray(svr.support_vectors_, dtype=dtype)
    xx = OnnxReduceSum(OnnxMul(X, X, op_version=opv), np.array([1], dtype=np.int64), keepdims=1,
                       op_version=opv)
    cross = OnnxMatMul(X, (-2.0 * S.T).astype(dtype), op_version=opv)
    d2 = OnnxAdd(OnnxAdd(xx, cross, op_version=opv), (S * S).sum(axis=1)[None, :].astype(dtype),
                 op_version=opv)
    kernel = OnnxExp(OnnxMul(d2, np.array([-svr._gamma], dtype=dtype), op_version=opv),
                     op_version=opv)
    raw = OnnxAdd(OnnxMatMul(kernel, np.asarray(svr.dual_coef_, dtype=dtype).T, op_version=opv),
                  np.asarray(svr.intercept_, dtype=dtype), op_version=opv)
    return OnnxAdd(OnnxMul(raw, np.array([model.y_scale_], dtype=dtype), op_version=opv),
                   np.array([model.y_mean_], dtype=dtype), op_version=opv)


def _width(model) -> int:
    """Columns one fitted regression model predicts: a share each for ``SoftmaxShares``, else 1."""
    last = model.steps[-1][1] if hasattr(model, "steps") else model
    return len(last.model_.classes_) if isinstance(last, SoftmaxShares) else 1


def _column_prediction(pipeline, X, opv, dtype):
    """The ONNX form of one fitted regression pipeline on ``X``: ``(n, 1)``, or ``(n, k)``
    for a multi-output model (:func:`_width`)."""
    if isinstance(pipeline, Rescaled):  # center + scale * (f(x) - center), as one affine map
        c, s = float(pipeline.center), float(pipeline.scale)
        inner = _column_prediction(pipeline.estimator, X, opv, dtype)
        return OnnxAdd(OnnxMul(inner, np.array([s], dtype=dtype), op_version=opv),
                       np.array([c - s * c], dtype=dtype), op_version=opv)
    out = X
    for _, step in pipeline.steps:
        if isinstance(step, ScaledGaussianSVR):
            out = _gaussian_svr(step, out, opv, dtype)
        elif isinstance(step, SoftmaxShares):
            out = _soft_lr(step.model_, out, opv, dtype)
        elif _compares_float32(step):
            x32 = OnnxCast(out, to=TensorProto.FLOAT, op_version=opv)
            v = OnnxSubEstimator(step, x32, op_version=opv,
                                 input_types=[FloatTensorType([None, step.n_features_in_])])
            out = OnnxCast(v, to=_PROTO[np.dtype(dtype)], op_version=opv)
        else:
            out = OnnxSubEstimator(step, out, op_version=opv)
    if _width(pipeline) > 1:
        return out
    return OnnxReshape(out, np.array([-1, 1], dtype=np.int64), op_version=opv)


def _shape_columns(operator):
    k = sum(_width(e) for e in operator.raw_operator.estimators)
    operator.outputs[0].type = operator.inputs[0].type.__class__([None, k])


def _convert_columns(scope, operator, container):
    op, X, dtype, opv = _parts(operator, container)
    cols = [_column_prediction(e, X, opv, dtype) for e in op.estimators]
    out = OnnxConcat(*cols, axis=1, op_version=opv, output_names=[operator.outputs[0]]) \
        if len(cols) > 1 else OnnxIdentity(cols[0], op_version=opv, output_names=[operator.outputs[0]])
    out.add_to(scope, container)


class MultilabelMLP(ClassifierMixin, BaseEstimator):
    """A fitted multi-label :class:`~sklearn.neural_network.MLPClassifier`, for conversion only.

    :func:`multilabel_to_onnx` puts it in place of the pipeline's last step:
    its graph is the network's layers and a sigmoid per tag (skl2onnx's own
    converter writes a label operator ONNX Runtime lacks for doubles).
    """

    def __init__(self, model):
        self.model = model
        self.classes_ = model.classes_


_ACTIVATIONS = {"relu": OnnxRelu, "tanh": OnnxTanh, "logistic": OnnxSigmoid}


def _emit_tags(scope, operator, container, proba) -> None:
    """Write the 0/1 tag matrix (probability at least 0.5) and the probability outputs."""
    opv = container.target_opset
    out = operator.outputs
    prob = OnnxIdentity(proba, op_version=opv, output_names=[out[1]])
    half = np.array([0.5], dtype=guess_numpy_type(operator.inputs[0].type))
    label = OnnxCast(OnnxGreaterOrEqual(prob, half, op_version=opv), to=TensorProto.INT64,
                     op_version=opv, output_names=[out[0]])
    prob.add_to(scope, container)
    label.add_to(scope, container)


def _shape_tags(operator):
    k = len(operator.raw_operator.classes_)
    operator.outputs[0].type = Int64TensorType([None, k])
    operator.outputs[1].type = operator.inputs[0].type.__class__([None, k])


def _convert_multilabel_mlp(scope, operator, container):
    op, X, dtype, opv = _parts(operator, container)
    mlp = op.model
    if mlp.out_activation_ != "logistic":
        raise ValueError(f"a multi-label network ends in a sigmoid, not {mlp.out_activation_}")
    a = X
    last = len(mlp.coefs_) - 1
    for i, (W, b) in enumerate(zip(mlp.coefs_, mlp.intercepts_)):
        a = OnnxAdd(OnnxMatMul(a, W.astype(dtype), op_version=opv), b.astype(dtype), op_version=opv)
        if i < last and mlp.activation != "identity":
            a = _ACTIVATIONS[mlp.activation](a, op_version=opv)
    _emit_tags(scope, operator, container, OnnxSigmoid(a, op_version=opv))


_PROTO = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}
_CLASSIFIERS = {
    Float32Input: ("EmodistFloat32Input", _convert_float32_input),
    SoftLogisticRegression: ("EmodistSoftLogisticRegression", _convert_soft_lr),
    InFoldSoftLogisticRegression: ("EmodistInFoldSoftLogisticRegression", _convert_soft_lr),
    SoftLabelClassifier: ("EmodistSoftLabelClassifier", _convert_soft_label),
    PriorShiftClassifier: ("EmodistPriorShiftClassifier", _convert_prior_shift),
    BalancedBaggingClassifier: ("EmodistBalancedBaggingClassifier", _convert_balanced_bagging),
    ClippedKNN: ("EmodistClippedKNN", _convert_clipped_knn),
}
_registered = False


def register_converters() -> None:
    """Register emodist's estimators with skl2onnx (once; later calls do nothing)."""
    global _registered
    if _registered:
        return
    for cls, (alias, convert) in _CLASSIFIERS.items():
        options = {**_ZIPMAP, "optim": [None, "cdist"]} if cls is ClippedKNN else dict(_ZIPMAP)
        update_registered_converter(cls, alias, calculate_linear_classifier_output_shapes, convert,
                                    options=options)
    update_registered_converter(WideInputPCA, "EmodistWideInputPCA", _shape_wide_pca,
                                _convert_wide_pca)
    update_registered_converter(ColumnRegressors, "EmodistColumnRegressors", _shape_columns,
                                _convert_columns)
    update_registered_converter(MultilabelMLP, "EmodistMultilabelMLP", _shape_tags,
                                _convert_multilabel_mlp, options=dict(_ZIPMAP))
    _registered = True


# --------------------------------------------------------------------------
# Conversion and running.
# --------------------------------------------------------------------------


def _float32_front(model: onnx.ModelProto, inner: str) -> onnx.ModelProto:
    """Give the graph a ``float32`` input :data:`INPUT_NAME` cast to the double input ``inner``."""
    g = model.graph
    old = next(i for i in g.input if i.name == inner)
    dims = [d.dim_value if d.HasField("dim_value") else None for d in old.type.tensor_type.shape.dim]
    g.input.remove(old)
    g.input.insert(0, helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, dims))
    g.node.insert(0, helper.make_node("Cast", [INPUT_NAME], [inner], to=TensorProto.DOUBLE,
                                      name="to_double"))
    return model


def _convert(model, n_features: int, name: str, options: dict | None = None) -> onnx.ModelProto:
    """skl2onnx's graph of ``model`` (double input) behind the ``float32`` input, checked."""
    register_converters()
    inner = INPUT_NAME + "_double"
    graph = convert_sklearn(model, name=name,
                            initial_types=[(inner, DoubleTensorType([None, int(n_features)]))],
                            options=options, target_opset=dict(OPSET))
    graph = _float32_front(graph, inner)
    onnx.checker.check_model(graph)
    return graph


def _last_step(pipeline, wrap) -> Pipeline:
    """``pipeline`` with its last step wrapped for conversion (``wrap(step)``)."""
    return Pipeline([*pipeline.steps[:-1], (pipeline.steps[-1][0], wrap(pipeline.steps[-1][1]))])


def to_onnx(pipeline, *, n_features: int, name: str = "emodist") -> onnx.ModelProto:
    """Convert a fitted preset pipeline to ONNX (``float32`` in, double inside).

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
        Fitted :func:`~emodist.learn.presets.make_pipeline` output.
    n_features : int
        Input columns.
    name : str
        Graph name.

    Returns
    -------
    onnx.ModelProto
        Input :data:`INPUT_NAME` (``float32``, ``(n, n_features)``); outputs
        the label and the class probabilities (:func:`onnx_outputs`).

    Raises
    ------
    RuntimeError
        skl2onnx has no converter for a step.
    """
    if _compares_float32(pipeline.steps[-1][1]):
        pipeline = _last_step(pipeline, Float32Input)
    return _convert(pipeline, n_features, name, {id(pipeline.steps[-1][1]): {"zipmap": False}})


def regression_to_onnx(model: ColumnRegressors, *, n_features: int,
                       name: str = "emodist") -> onnx.ModelProto:
    """Convert fitted per-column regression pipelines to ONNX (``float32`` in, double inside).

    Parameters
    ----------
    model : ColumnRegressors
        One fitted regression pipeline per target column.
    n_features, name
        As in :func:`to_onnx`.

    Returns
    -------
    onnx.ModelProto
        Input :data:`INPUT_NAME`; one output (:func:`onnx_outputs`:
        ``values``), ``(n, n_targets)`` double, column ``j`` the prediction
        of ``model.estimators[j]``.
    """
    return _convert(model, n_features, name)


def multilabel_to_onnx(pipeline, *, n_features: int, name: str = "emodist") -> onnx.ModelProto:
    """Convert a fitted multi-label preset pipeline to ONNX (``float32`` in, double inside).

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
        Fitted :meth:`~emodist.learn.multilabel.MultilabelPreset.pipeline`.
    n_features, name
        As in :func:`to_onnx`.

    Returns
    -------
    onnx.ModelProto
        Input :data:`INPUT_NAME`; outputs the 0/1 tag matrix and the per-tag
        probabilities (:func:`onnx_outputs`), each ``(n, n_tags)``.
    """
    if isinstance(pipeline.steps[-1][1], MLPClassifier):
        pipeline = _last_step(pipeline, MultilabelMLP)
    return _convert(pipeline, n_features, name, {id(pipeline.steps[-1][1]): {"zipmap": False}})


def onnx_outputs(model: onnx.ModelProto) -> dict:
    """The names of an exported graph's outputs.

    Returns
    -------
    dict
        ``{"label": name, "probabilities": name}`` for a classifier or a
        multi-label model; ``{"values": name}`` for a regression model.
    """
    names = [o.name for o in model.graph.output]
    if len(names) == 1:
        return {"values": names[0]}
    return {"label": names[0], "probabilities": names[1]}


def run_onnx(model, X) -> np.ndarray:
    """Class probabilities (or a regression's values) of an exported graph on rows ``X``.

    ONNX Runtime, one thread; the last output is returned.

    Parameters
    ----------
    model : onnx.ModelProto or bytes
        The graph.
    X : array_like, shape (n, n_features)
        Cast to ``float32``.

    Returns
    -------
    numpy.ndarray, shape (n, k)
    """
    import onnxruntime as ort  # the session is made only where a model runs

    data = model if isinstance(model, bytes) else model.SerializeToString()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    out = sess.get_outputs()[-1].name
    return np.asarray(sess.run([out], {INPUT_NAME: np.asarray(X, dtype=np.float32)})[0])

