"""Convert a fitted champion Pipeline to ONNX, check it scores like scikit-learn, or fall back to skops.

Plain Python (no Dagster import); skl2onnx / onnx / onnxruntime / sklearn are imported inside functions.

The ONNX graph has one input per feature column, in ``pipeline.feature_names_in_`` order, so a JSON record
maps straight onto the inputs:

* number columns: ``tensor(double)[N, 1]``, NULL as NaN (double, not float: HistGradientBoosting compares
  float64 values with float64 thresholds; a float32 input could flip a split on a value that sits between
  the two roundings);
* text columns: ``tensor(string)[N, 1]``. ONNX string tensors have no NULL, so **the caller maps NULL (None /
  NaN) to the column's ``missing_value`` from the schema before ONNX** (``runtime.prepare_inputs`` does it).
  That value is the ``fill_value`` of the pipeline's categorical imputers (``models.MISSING_CATEGORY``), so
  the two categorical SimpleImputers are identities on the inputs the graph receives (see
  ``_convert_simple_imputer``).

The single output ``proba1`` (``tensor(double)[N]``) is the probability of class 1.

Conversion fixes, each found with skl2onnx 1.20.0 / onnx 1.23.2 / onnxruntime 1.32.0 / scikit-learn 1.9.1 and
passed per call (``custom_conversion_functions`` / ``custom_shape_calculators`` / ``custom_parsers`` of
``skl2onnx.convert_sklearn``), so nothing in skl2onnx's global registry is changed:

1. SimpleImputer on text columns (both categorical imputers): skl2onnx refuses any non-string
   ``missing_values`` on a string input - ``NotImplementedError: The converter is implemented when the missing
   values are string not <class 'float'>`` (the np.nan imputer) and ``... not <class 'NoneType'>`` (the None
   one). Fix: NULL -> fill_value happens in the runtime's input preparation (documented above); the converter
   emits Identity for a ``strategy="constant"`` string imputer and refuses anything else.
2. SimpleImputer(median, add_indicator=True) on numbers: skl2onnx 1.20.0 ignores ``add_indicator`` (its
   output would lack the indicator columns, so the downstream width would be wrong) and its Imputer op is
   float-only in onnxruntime. Fix: our converter, ``Where(IsNaN(X), statistics_, X)`` plus
   ``Cast(IsNaN(X[:, indicator_.features_]))`` concatenated like sklearn, in the input's dtype.
3. HistGradientBoostingClassifier: (a) skl2onnx (op_version=1) stores thresholds as float32, sklearn compares
   float64 values with float64 percentile thresholds; the imputed median sits exactly on such a threshold
   and flips in float32: max |diff| 0.08 on the unit-test data. Fix: call skl2onnx's own converter with
   op_version=3 and a container proxy that moves thresholds/leaf weights to TreeEnsembleClassifier v3's
   double ``*_as_tensor`` attributes. (b) The proxy also casts boolean entries of list attributes
   (``nodes_missing_value_tracks_true``) to int, the colleague's ``TypeError: Expected an int, got a
   boolean`` from onnx ``make_attribute``. NOTE: with the versions above I could NOT reproduce (b) (the
   standalone converter ran fine here, for float/double inputs and ai.onnx.ml opsets 3 and 5), so (b) is a
   harmless guard, not a measured fix.
4. VotingClassifier over Pipelines: skl2onnx's converter looks members up in ``sklearn_operator_name_map`` (a
   Pipeline member has no converter: ``MissingConverter``), calls ``op.weights.sum()`` (models.py stores a
   list: ``AttributeError``) and raises ``NotImplementedError: flatten_transform==True is not implemented``
   for the default VotingClassifier. Fix: a parser that parses each member pipeline on the shared inputs and
   a converter for the soft vote, ``sum(w_i * p_i) / sum(w)`` (np.average, as VotingClassifier.predict_proba);
   zero-weight members are skipped (they add nothing).
5. FrozenEstimator (sklearn >= 1.6, what ``models._fold_ensemble`` wraps members in): unknown to skl2onnx
   (``MissingShapeCalculator``). Fix: a parser that parses the inner ``estimator`` instead (frozen only means
   "fit is a no-op"; predict is the inner estimator's).
6. RandomForestClassifier: converts, but with float32 thresholds; sklearn compares float32(x) with float64
   thresholds. Measured on the demo (20k players) random_forest candidate: max |diff| 0.0049 (the parity
   check then fell back to skops, as designed). Fix: Cast(float32)->Cast(double) then the v3 double tree
   (``_convert_random_forest``): 3e-8.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

OUTPUT_NAME = "proba1"
PARITY_TOLERANCE = 1e-4
DEFAULT_TOP_K_SHARE = 0.1
TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}
#: numeric input dtype, shared with runtime.prepare_inputs
NUMBER_DTYPE = np.float64


class ConversionError(RuntimeError):
    """The pipeline (or a piece of it) cannot be converted to ONNX with the fixes here."""


# ----------------------------------------------------------------------------------------------- schema


def _unwrap(estimator: Any) -> Any:
    """FrozenEstimator -> its inner estimator (recursively)."""
    while type(estimator).__name__ == "FrozenEstimator" and hasattr(estimator, "estimator"):
        estimator = estimator.estimator
    return estimator


def _base_pipelines(pipeline: Any) -> list[Any]:
    """The preprocessing pipelines inside: the pipeline itself, or each member of a VotingClassifier."""
    from sklearn.ensemble import VotingClassifier

    final = _unwrap(pipeline.steps[-1][1]) if hasattr(pipeline, "steps") else _unwrap(pipeline)
    if isinstance(final, VotingClassifier):
        members = getattr(final, "estimators_", None) or [est for _, est in final.estimators]
        result: list[Any] = []
        for member in members:
            result.extend(_base_pipelines(_unwrap(member)))
        return result
    return [pipeline]


def _text_columns(pipeline: Any) -> dict[str, dict[str, Any]]:
    """Per text column, the categories its OneHotEncoder(s) know and the imputers' fill value."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    found: dict[str, dict[str, Any]] = {}
    for base in _base_pipelines(pipeline):
        steps = [_unwrap(step) for _, step in base.steps] if isinstance(base, Pipeline) else [base]
        for step in steps:
            if not isinstance(step, ColumnTransformer):
                continue
            for _, transformer, columns in step.transformers_:
                chain = list(transformer.named_steps.values()) if isinstance(transformer, Pipeline) else [transformer]
                encoder = next((t for t in chain if isinstance(t, OneHotEncoder)), None)
                if encoder is None:
                    continue
                fills = {
                    t.fill_value for t in chain if isinstance(t, SimpleImputer) and t.strategy == "constant"
                }
                if len(fills) > 1:
                    raise ConversionError(f"text columns {list(columns)} have different fill values {fills}")
                fill = next(iter(fills)) if fills else None
                for position, column in enumerate(columns):
                    entry = found.setdefault(str(column), {"categories": set(), "missing_value": fill})
                    if entry["missing_value"] != fill:
                        raise ConversionError(
                            f"text column {column!r}: members disagree on the missing value"
                            f" ({entry['missing_value']!r} vs {fill!r})"
                        )
                    entry["categories"].update(str(c) for c in encoder.categories_[position])
    return found


def input_schema(frame: pd.DataFrame | None, pipeline: Any) -> dict[str, Any]:
    """The features the pipeline takes, in ``feature_names_in_`` order (as ``scoring.feature_frame``).

    Each feature is ``{"name", "kind": "number"|"text", "categories": [...], "nullable": True}``; text
    features also carry ``missing_value`` (what NULL becomes before ONNX). ``categories`` lists what the
    OneHotEncoder(s) know (an unseen category encodes as all zeros, as in sklearn); numbers have none.
    A column is text if the pipeline one-hot-encodes it; ``frame`` (optional) is only checked to hold every
    feature.
    """
    names = getattr(pipeline, "feature_names_in_", None)
    if names is None:
        raise ConversionError("pipeline has no feature_names_in_: was it fitted on a DataFrame?")
    names = [str(name) for name in names]
    if frame is not None:
        missing = [name for name in names if name not in frame.columns]
        if missing:
            raise ValueError(f"frame lacks feature columns the model needs: {missing}")
    text = _text_columns(pipeline)
    features = []
    for name in names:
        if name in text:
            features.append(
                {
                    "name": name,
                    "kind": "text",
                    "categories": sorted(text[name]["categories"]),
                    "nullable": True,
                    "missing_value": text[name]["missing_value"],
                }
            )
        else:
            features.append({"name": name, "kind": "number", "categories": [], "nullable": True})
    classes = [c.item() if isinstance(c, np.generic) else c for c in pipeline.classes_]
    if 1 not in classes:
        raise ConversionError(f"model has no positive class 1 among its classes {classes}")
    return {"features": features, "output": OUTPUT_NAME, "positive_class_index": classes.index(1)}


# ----------------------------------------------------------------------------------------------- converters


def _numeric_imputer(scope: Any, operator: Any, container: Any) -> None:
    """Fix 2: SimpleImputer on numbers incl. add_indicator, in the input dtype (double here)."""
    from onnx import TensorProto
    from skl2onnx.common.data_types import DoubleTensorType
    from skl2onnx.operator_converters.common import concatenate_variables

    op = operator.raw_operator
    missing = op.missing_values
    if not (missing is None or (isinstance(missing, float) and math.isnan(missing))):
        raise ConversionError(f"numeric SimpleImputer with missing_values={missing!r} is not supported")
    double = isinstance(operator.inputs[0].type, DoubleTensorType)
    dtype = np.float64 if double else np.float32
    proto = TensorProto.DOUBLE if double else TensorProto.FLOAT
    x = concatenate_variables(scope, operator.inputs, container)
    statistics = np.asarray(op.statistics_, dtype=np.float64)
    kept = np.flatnonzero(~np.isnan(statistics))  # all-NaN columns are dropped (keep_empty_features=False)
    if len(kept) < len(statistics) and not getattr(op, "keep_empty_features", False):
        selected = scope.get_unique_variable_name("kept_columns")
        indices = scope.get_unique_variable_name("kept_indices")
        container.add_initializer(indices, TensorProto.INT64, [len(kept)], kept.tolist())
        container.add_node("Gather", [x, indices], [selected], axis=1, name=scope.get_unique_operator_name("Gather"))
        source, fill_values = selected, statistics[kept]
    else:
        source, fill_values = x, np.nan_to_num(statistics, nan=0.0)
    fill = scope.get_unique_variable_name("fill")
    container.add_initializer(fill, proto, [1, len(fill_values)], fill_values.astype(dtype).tolist())
    isnan = scope.get_unique_variable_name("isnan")
    container.add_node("IsNaN", [source], [isnan], name=scope.get_unique_operator_name("IsNaN"))
    imputed = scope.get_unique_variable_name("imputed")
    container.add_node("Where", [isnan, fill, source], [imputed], name=scope.get_unique_operator_name("Where"))
    outputs = [imputed]
    indicator = getattr(op, "indicator_", None)
    if op.add_indicator and indicator is not None and len(indicator.features_):
        idx = scope.get_unique_variable_name("indicator_indices")
        container.add_initializer(idx, TensorProto.INT64, [len(indicator.features_)], list(map(int, indicator.features_)))
        columns = scope.get_unique_variable_name("indicator_columns")
        container.add_node("Gather", [x, idx], [columns], axis=1, name=scope.get_unique_operator_name("Gather"))
        flags = scope.get_unique_variable_name("indicator_flags")
        container.add_node("IsNaN", [columns], [flags], name=scope.get_unique_operator_name("IsNaN"))
        values = scope.get_unique_variable_name("indicator")
        container.add_node("Cast", [flags], [values], to=proto, name=scope.get_unique_operator_name("Cast"))
        outputs.append(values)
    if len(outputs) == 1:
        container.add_node("Identity", outputs, [operator.outputs[0].full_name], name=scope.get_unique_operator_name("Identity"))
    else:
        container.add_node(
            "Concat", outputs, [operator.outputs[0].full_name], axis=1, name=scope.get_unique_operator_name("Concat")
        )


def _convert_simple_imputer(scope: Any, operator: Any, container: Any) -> None:
    """Fixes 1 and 2: string imputers are identities (NULL was mapped to fill_value before ONNX)."""
    from skl2onnx.common.data_types import StringTensorType
    from skl2onnx.operator_converters.common import concatenate_variables

    op = operator.raw_operator
    if not isinstance(operator.inputs[0].type, StringTensorType):
        _numeric_imputer(scope, operator, container)
        return
    if op.strategy != "constant" or not isinstance(op.fill_value, str) or op.add_indicator:
        raise ConversionError(
            f"text SimpleImputer(strategy={op.strategy!r}, fill_value={op.fill_value!r},"
            f" add_indicator={op.add_indicator}) is not supported: only a constant string fill"
        )
    x = concatenate_variables(scope, operator.inputs, container)
    container.add_node("Identity", [x], [operator.outputs[0].full_name], name=scope.get_unique_operator_name("Identity"))


def _imputer_shape(operator: Any) -> None:
    from skl2onnx.common.data_types import StringTensorType

    op = operator.raw_operator
    n = operator.inputs[0].get_first_dimension()
    width = 0
    for variable in operator.inputs:
        width = None if width is None or variable.type.shape[1] is None else width + variable.type.shape[1]
    if not isinstance(operator.inputs[0].type, StringTensorType) and width is not None:
        statistics = np.asarray(op.statistics_, dtype=np.float64)
        if not getattr(op, "keep_empty_features", False):
            width = int((~np.isnan(statistics)).sum())
        indicator = getattr(op, "indicator_", None)
        if op.add_indicator and indicator is not None:
            width += len(indicator.features_)
    operator.outputs[0].type = operator.inputs[0].type.__class__([n, width])


_DOUBLE_TREE_ATTRIBUTES = ("nodes_values", "nodes_hitrates", "class_weights", "base_values")


class _TreeAttributeContainer:
    """Container proxy for fix 3: booleans in list attributes become ints (onnx rejects bool in ints) and,
    with ``double``, float64 arrays of a TreeEnsembleClassifier move to its ``*_as_tensor`` (double)
    attributes instead of being stored as float32."""

    def __init__(self, container: Any, double: bool, input_override: str | None = None) -> None:
        self._container = container
        self._double = double
        self._input_override = input_override  # feed the tree ensemble this variable instead

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, op_type: str, *args: Any, **attrs: Any) -> Any:
        from onnx import numpy_helper

        for key, value in list(attrs.items()):
            if isinstance(value, (list, tuple)) and any(isinstance(v, (bool, np.bool_)) for v in value):
                attrs[key] = [int(v) for v in value]
            elif isinstance(value, np.ndarray) and value.dtype == np.bool_:
                attrs[key] = value.astype(np.int64)
        if self._double and op_type == "TreeEnsembleClassifier":
            for key in _DOUBLE_TREE_ATTRIBUTES:
                if key in attrs:
                    values = np.asarray(attrs.pop(key), dtype=np.float64).ravel()
                    attrs[f"{key}_as_tensor"] = numpy_helper.from_array(values, name=f"{key}_as_tensor")
        if self._input_override is not None and op_type == "TreeEnsembleClassifier":
            args = ([self._input_override], *args[1:])
        return self._container.add_node(op_type, *args, **attrs)


def _convert_hist_gradient_boosting(scope: Any, operator: Any, container: Any) -> None:
    """Fix 3: skl2onnx's HistGradientBoosting converter with boolean attributes cast to int, and (double
    input) TreeEnsembleClassifier ai.onnx.ml v3 with double thresholds/weights.

    Why double: skl2onnx calls the converter with op_version=1, which stores thresholds as float32 and
    compares in float32. sklearn's HistGradientBoosting compares float64 values with float64 thresholds,
    and a percentile threshold can sit within float32 rounding of a data value - notably the imputed
    median. Measured on the unit-test data: max |diff| 0.08 with float32 thresholds, ~1e-7 with double.
    """
    from skl2onnx.common.data_types import DoubleTensorType
    from skl2onnx.operator_converters.random_forest import convert_sklearn_random_forest_classifier

    double = isinstance(operator.inputs[0].type, DoubleTensorType)
    convert_sklearn_random_forest_classifier(
        scope, operator, _TreeAttributeContainer(container, double), op_version=3 if double else 1
    )


def _convert_random_forest(scope: Any, operator: Any, container: Any) -> None:
    """Fix 6: RandomForest with sklearn's exact comparison, ``float32(x) <= float64 threshold``.

    sklearn casts X to float32 and compares with float64 thresholds (midpoints of float32 values);
    skl2onnx's converter (op_version=1) stores float32 thresholds, so a value within float32 rounding of
    a threshold can go the other way. Measured on the demo champion's random_forest candidate (20k players,
    10,722 scoring rows): max |diff| 0.0049 with skl2onnx's converter. Fix: Cast(float32) -> Cast(double)
    in front of a TreeEnsembleClassifier v3 with double thresholds/leaf weights.
    """
    from onnx import TensorProto
    from skl2onnx.common.data_types import DoubleTensorType
    from skl2onnx.operator_converters.random_forest import convert_sklearn_random_forest_classifier

    if not isinstance(operator.inputs[0].type, DoubleTensorType):
        convert_sklearn_random_forest_classifier(scope, operator, _TreeAttributeContainer(container, False))
        return
    as_float = scope.get_unique_variable_name("rf_float32")
    container.add_node("Cast", [operator.inputs[0].full_name], [as_float], to=TensorProto.FLOAT,
                       name=scope.get_unique_operator_name("Cast"))
    as_double = scope.get_unique_variable_name("rf_float32_as_double")
    container.add_node("Cast", [as_float], [as_double], to=TensorProto.DOUBLE, name=scope.get_unique_operator_name("Cast"))
    proxy = _TreeAttributeContainer(container, True, input_override=as_double)
    convert_sklearn_random_forest_classifier(scope, operator, proxy, op_version=3)


def _parse_frozen(scope: Any, model: Any, inputs: Any, custom_parsers: Any = None) -> Any:
    """Fix 5: a FrozenEstimator parses as its inner estimator."""
    from skl2onnx._parse import _parse_sklearn

    return _parse_sklearn(scope, model.estimator, inputs, custom_parsers=custom_parsers)


SOFT_VOTE_ALIAS = "RefreshAssetsSoftVote"


def _voting_weights(model: Any) -> np.ndarray:
    count = len(model.estimators_)
    weights = np.ones(count) if model.weights is None else np.asarray(model.weights, dtype=np.float64)
    if weights.shape != (count,) or weights.sum() <= 0:
        raise ConversionError(f"VotingClassifier weights {model.weights!r} do not fit {count} members")
    return weights


def _parse_voting(scope: Any, model: Any, inputs: Any, custom_parsers: Any = None) -> Any:
    """Fix 4: parse each member (a whole pipeline) on the shared inputs, then one soft-vote operator."""
    from skl2onnx._parse import _parse_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, Int64TensorType

    if model.voting != "soft":
        raise ConversionError(f"VotingClassifier(voting={model.voting!r}) is not supported, only soft voting")
    weights = _voting_weights(model)
    probabilities = []
    for member, weight in zip(model.estimators_, weights, strict=True):
        if weight == 0:
            continue
        outputs = _parse_sklearn(scope, _unwrap(member), inputs, custom_parsers=custom_parsers)
        if len(outputs) < 2:
            raise ConversionError(f"member {type(member).__name__} yields no probabilities")
        probabilities.append(outputs[1])
    operator = scope.declare_local_operator(SOFT_VOTE_ALIAS, model)
    operator.inputs = probabilities
    operator.outputs.append(scope.declare_local_variable("label", Int64TensorType()))
    operator.outputs.append(scope.declare_local_variable("probabilities", DoubleTensorType()))
    return operator.outputs


def _soft_vote_shape(operator: Any) -> None:
    from skl2onnx.common.data_types import DoubleTensorType, Int64TensorType

    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = Int64TensorType([n])
    operator.outputs[1].type = DoubleTensorType([n, len(operator.raw_operator.classes_)])


def _convert_soft_vote(scope: Any, operator: Any, container: Any) -> None:
    """Fix 4: np.average(member probabilities, weights) in double; label = argmax (index into classes_)."""
    from onnx import TensorProto

    model = operator.raw_operator
    weights = _voting_weights(model)
    weights = weights[weights != 0]
    total = float(weights.sum())
    terms = []
    for variable, weight in zip(operator.inputs, weights, strict=True):
        as_double = scope.get_unique_variable_name("member_proba")
        container.add_node("Cast", [variable.full_name], [as_double], to=TensorProto.DOUBLE, name=scope.get_unique_operator_name("Cast"))
        w = scope.get_unique_variable_name("weight")
        container.add_initializer(w, TensorProto.DOUBLE, [1], [float(weight) / total])
        term = scope.get_unique_variable_name("weighted_proba")
        container.add_node("Mul", [as_double, w], [term], name=scope.get_unique_operator_name("Mul"))
        terms.append(term)
    container.add_node("Sum", terms, [operator.outputs[1].full_name], name=scope.get_unique_operator_name("Sum"))
    container.add_node(
        "ArgMax", [operator.outputs[1].full_name], [operator.outputs[0].full_name], axis=1, keepdims=0,
        name=scope.get_unique_operator_name("ArgMax"),
    )


# ----------------------------------------------------------------------------------------------- conversion


def _classifiers(estimator: Any) -> list[Any]:
    """Every classifier object inside (for the zipmap=False option)."""
    from sklearn.base import is_classifier

    found = []
    seen: set[int] = set()

    def walk(obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        obj = _unwrap(obj)
        if hasattr(obj, "steps"):
            for _, step in obj.steps:
                walk(step)
        if hasattr(obj, "estimators_") and isinstance(obj.estimators_, list):
            for member in obj.estimators_:
                if not isinstance(member, str):
                    walk(member)
        if is_classifier(obj) and not hasattr(obj, "steps"):
            found.append(obj)

    walk(estimator)
    return found


def _keep_output(model: Any, probabilities: str, column: int) -> Any:
    """Replace the graph outputs by ``proba1`` = probabilities[:, column] as double, and prune dead nodes."""
    from onnx import TensorProto, helper

    graph = model.graph
    index_name, gathered = "proba1_column", "proba1_float"
    graph.initializer.append(helper.make_tensor(index_name, TensorProto.INT64, [], [column]))
    graph.node.append(helper.make_node("Gather", [probabilities, index_name], [gathered], axis=1, name="proba1_gather"))
    graph.node.append(helper.make_node("Cast", [gathered], [OUTPUT_NAME], to=TensorProto.DOUBLE, name="proba1_cast"))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.DOUBLE, [None]))
    # keep only the nodes the output needs (the label branch and zipmap would run for nothing)
    needed = {OUTPUT_NAME}
    kept = []
    for node in reversed(list(graph.node)):
        if any(out in needed for out in node.output):
            kept.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    used = [init for init in graph.initializer if init.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(used)
    return model


def to_onnx(pipeline: Any, schema: Mapping[str, Any]) -> bytes:
    """The whole fitted pipeline (preprocessing included) as a serialized ONNX model.

    Inputs: one per schema feature (double [N,1] for numbers, string [N,1] for text, NULL text already
    mapped to ``missing_value``); output ``proba1`` (double [N]), the probability of class 1. Raises
    (ConversionError or skl2onnx's own errors) when a piece cannot be converted.
    """
    import onnx
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier, VotingClassifier
    from sklearn.impute import SimpleImputer

    initial_types = []
    for feature in schema["features"]:
        kind = DoubleTensorType if feature["kind"] == "number" else StringTensorType
        initial_types.append((feature["name"], kind([None, 1])))
    names = [str(n) for n in getattr(pipeline, "feature_names_in_", [])]
    if names != [f["name"] for f in schema["features"]]:
        raise ConversionError(f"schema features {[f['name'] for f in schema['features']]} != pipeline's {names}")

    conversion = {
        SimpleImputer: _convert_simple_imputer,
        HistGradientBoostingClassifier: _convert_hist_gradient_boosting,
        RandomForestClassifier: _convert_random_forest,
        VotingClassifier: _convert_soft_vote,
    }
    shapes = {SimpleImputer: _imputer_shape, VotingClassifier: _soft_vote_shape}
    parsers: dict[Any, Any] = {VotingClassifier: _parse_voting}
    try:
        from sklearn.frozen import FrozenEstimator
    except ImportError:  # pragma: no cover - sklearn < 1.6
        pass
    else:
        parsers[FrozenEstimator] = _parse_frozen
    options = {id(clf): {"zipmap": False} for clf in _classifiers(pipeline)}
    model = convert_sklearn(
        pipeline,
        initial_types=initial_types,
        target_opset=dict(TARGET_OPSET),
        custom_conversion_functions=conversion,
        custom_shape_calculators=shapes,
        custom_parsers=parsers,
        options=options,
    )
    outputs = [o.name for o in model.graph.output]
    if len(outputs) < 2:
        raise ConversionError(f"converted graph has no probabilities output: {outputs}")
    model = _keep_output(model, outputs[1], int(schema["positive_class_index"]))
    onnx.checker.check_model(model)
    return model.SerializeToString()


# ----------------------------------------------------------------------------------------------- parity


def _reference_scores(pipeline: Any, frame: pd.DataFrame) -> np.ndarray:
    """scikit-learn's probability of class 1, as production batch scoring computes it."""
    from refresh_assets.core.models import _model_frame, _pipeline_columns

    positive = list(np.asarray(pipeline.classes_)).index(1)
    features = _model_frame(frame, _pipeline_columns(pipeline, frame))
    return np.asarray(pipeline.predict_proba(features)[:, positive], dtype=np.float64)


def parity(
    pipeline: Any,
    scorer: Any,
    frame: pd.DataFrame,
    top_k_share: float = DEFAULT_TOP_K_SHARE,
    tolerance: float = PARITY_TOLERANCE,
) -> dict[str, Any]:
    """How ``scorer.predict_proba1`` agrees with sklearn's ``predict_proba[:, 1]`` on ``frame``.

    The top-k sets are ``scoring.top_k_mask`` (rank by score descending, ties by row position, stable), the
    same rule the production scores table uses. ``ok`` = max |diff| <= tolerance and the same top-k set.
    """
    from refresh_assets.core.scoring import top_k_mask

    reference = _reference_scores(pipeline, frame)
    candidate = np.asarray(scorer.predict_proba1(frame), dtype=np.float64)
    if candidate.shape != reference.shape:
        raise ValueError(f"scorer returned {candidate.shape}, sklearn {reference.shape}")
    diff = np.abs(candidate - reference)
    both_nan = np.isnan(candidate) & np.isnan(reference)
    diff = np.where(both_nan, 0.0, diff)
    max_diff = float(np.nanmax(np.where(np.isnan(diff), np.inf, diff))) if len(diff) else 0.0
    reference_top, candidate_top = top_k_mask(reference, top_k_share), top_k_mask(candidate, top_k_share)
    differing = int((reference_top != candidate_top).sum())
    same_top_k = differing == 0
    return {
        "rows": int(len(frame)),
        "max_abs_diff": max_diff,
        "mean_abs_diff": float(diff.mean()) if len(diff) else 0.0,
        "tolerance": float(tolerance),
        "top_k_share": float(top_k_share),
        "top_k_rows": int(reference_top.sum()),
        "same_top_k": bool(same_top_k),
        "top_k_rows_differing": differing,
        "ok": bool(max_diff <= tolerance and same_top_k),
    }


def convert_or_fallback(
    pipeline: Any,
    frame: pd.DataFrame,
    *,
    top_k_share: float = DEFAULT_TOP_K_SHARE,
    tolerance: float = PARITY_TOLERANCE,
) -> tuple[str, bytes | None, dict[str, Any], str | None]:
    """(runtime, onnx bytes or None, parity dict, reason): "onnx" when the conversion succeeds AND parity holds
    on ``frame``; otherwise "skops" (serve the skops file) with the reason - never silently.

    On fallback after a failed parity check the parity dict still holds the measured figures; after a failed
    conversion it is ``{"rows": len(frame), "ok": False}``.
    """
    from refresh_assets.serving.runtime import OnnxScorer

    try:
        schema = input_schema(frame, pipeline)
        data = to_onnx(pipeline, schema)
        scorer = OnnxScorer(data, schema)
    except Exception as error:  # noqa: BLE001 - any conversion failure means "serve with skops", with reason
        reason = f"ONNX conversion failed: {type(error).__name__}: {error}"
        return "skops", None, {"rows": int(len(frame)), "ok": False}, reason
    try:
        result = parity(pipeline, scorer, frame, top_k_share=top_k_share, tolerance=tolerance)
    except Exception as error:  # noqa: BLE001
        reason = f"ONNX parity check failed to run: {type(error).__name__}: {error}"
        return "skops", None, {"rows": int(len(frame)), "ok": False}, reason
    if not result["ok"]:
        reason = (
            f"ONNX parity failed on {result['rows']} rows: max |diff| {result['max_abs_diff']:.3g}"
            f" (tolerance {tolerance:g}), top-{top_k_share:g} sets differ in {result['top_k_rows_differing']} rows"
        )
        return "skops", None, result, reason
    return "onnx", data, result, None


__all__: Sequence[str] = (
    "ConversionError",
    "OUTPUT_NAME",
    "convert_or_fallback",
    "input_schema",
    "parity",
    "to_onnx",
)
