"""Classification metrics on integer labels: accuracy, confusion matrix and the
scikit-learn-style classification report. NumPy only, so the core package
needs no plotting or ML extras.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ._checks import check_int, check_labels

__all__ = ["accuracy", "confusion_matrix", "classification_report"]

_REPORT_HEADERS = ("precision", "recall", "f1-score", "support")


def _check_pair(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate both label arrays and check that their lengths match."""
    true_labels = check_labels("y_true", y_true)
    pred_labels = check_labels("y_pred", y_pred)
    if true_labels.shape != pred_labels.shape:
        raise ValueError(
            f"y_true and y_pred must have the same length, got {true_labels.shape[0]} "
            f"and {pred_labels.shape[0]}"
        )
    return true_labels, pred_labels


def _check_num_classes(num_classes: int | None, largest_label: int) -> int | None:
    """Validate ``num_classes`` against the largest label seen; None passes through."""
    if num_classes is None:
        return None
    num_classes = check_int(num_classes, "num_classes", minimum=1)
    if largest_label >= num_classes:
        raise ValueError(
            f"labels must be smaller than num_classes={num_classes}, got label {largest_label}"
        )
    return num_classes


def accuracy(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Fraction of predictions equal to the true label.

    Parameters
    ----------
    y_true : npt.ArrayLike
        True class indices, shape (N,), integers >= 0.
    y_pred : npt.ArrayLike
        Predicted class indices, shape (N,), integers >= 0.

    Returns
    -------
    float
        The accuracy as a Python float in [0, 1].

    Raises
    ------
    TypeError
        If a label array does not hold integers.
    ValueError
        If a label array is not 1-D, is empty or holds a negative
        value, or if the two lengths differ.

    Examples
    --------
    >>> accuracy([0, 1, 2, 2], [0, 1, 1, 2])
    0.75
    """
    true_labels, pred_labels = _check_pair(y_true, y_pred)
    return float(np.count_nonzero(true_labels == pred_labels) / true_labels.size)


def confusion_matrix(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, num_classes: int | None = None
) -> np.ndarray:
    """Count how often each true class was predicted as each class.

    Parameters
    ----------
    y_true : npt.ArrayLike
        True class indices, shape (N,), integers >= 0.
    y_pred : npt.ArrayLike
        Predicted class indices, shape (N,), integers >= 0.
    num_classes : int | None
        Number of classes K. None means the largest label in
        either array plus one.

    Returns
    -------
    np.ndarray
        An int64 array of shape (K, K) whose entry [i, j] counts the samples of
        true class i predicted as class j (rows = true, columns = predicted).

    Raises
    ------
    TypeError
        If a label array does not hold integers, or ``num_classes``
        is not an int.
    ValueError
        If a label array is not 1-D, is empty or holds a negative
        value, if the lengths differ, or if a label is >= ``num_classes``.

    Examples
    --------
    >>> confusion_matrix([0, 1, 1], [0, 0, 1])
    array([[1, 0],
           [1, 1]])
    """
    true_labels, pred_labels = _check_pair(y_true, y_pred)
    largest_label = int(max(true_labels.max(), pred_labels.max()))
    num_classes = _check_num_classes(num_classes, largest_label)
    if num_classes is None:
        num_classes = largest_label + 1
    # One bincount over the flattened (true, pred) index is O(N) with no Python loop.
    counts = np.bincount(true_labels * num_classes + pred_labels, minlength=num_classes**2)
    return counts.reshape(num_classes, num_classes).astype(np.int64, copy=False)


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise ``numerator / denominator`` with 0.0 where the denominator is 0."""
    numerator = numerator.astype(np.float64)
    result = np.zeros_like(numerator)
    np.divide(numerator, denominator, out=result, where=denominator != 0)
    return result


def classification_report(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    target_names: Sequence[str] | None = None,
    digits: int = 2,
    output_dict: bool = False,
    num_classes: int | None = None,
) -> str | dict:
    """Per-class precision, recall, F1 and support, then accuracy and averages.

    The layout and the numbers follow ``sklearn.metrics.classification_report``.
    Where a ratio has a zero denominator (a class never predicted, or absent
    from ``y_true``) it is reported as 0.0, without warning or NaN.

    Which classes get a row:

    * ``num_classes`` given: classes ``0 .. num_classes - 1``;
    * else ``target_names`` given: classes ``0 .. len(target_names) - 1``;
    * else, as scikit-learn does, the sorted labels present in ``y_true`` or
      ``y_pred``.

    Classes with a row but no samples and no predictions count as 0.0 in the
    macro average.

    Parameters
    ----------
    y_true : npt.ArrayLike
        True class indices, shape (N,), integers >= 0.
    y_pred : npt.ArrayLike
        Predicted class indices, shape (N,), integers >= 0.
    target_names : Sequence[str] | None
        Display name of each class row, in row order. Default:
        the class index as a string.
    digits : int
        Number of decimals of the floats in the text report (the dict
        holds unrounded values).
    output_dict : bool
        Return a dict instead of a text table.
    num_classes : int | None
        Number of classes K; see above.

    Returns
    -------
    str | dict
        A text table, or with ``output_dict=True`` a dict
        ``{class_name: {"precision", "recall", "f1-score", "support"}, ...,
        "accuracy": float, "macro avg": {...}, "weighted avg": {...}}`` with
        Python floats and int supports.

    Raises
    ------
    TypeError
        If a label array does not hold integers, or ``digits`` or
        ``num_classes`` is not an int.
    ValueError
        If a label array is not 1-D, is empty or holds a negative
        value, if the lengths differ, if a label has no row, if
        ``target_names`` has the wrong length, or if ``digits`` < 0.

    Examples
    --------
    >>> print(classification_report([0, 0, 1], [0, 1, 1]))
                  precision    recall  f1-score   support
    <BLANKLINE>
               0       1.00      0.50      0.67         2
               1       0.50      1.00      0.67         1
    <BLANKLINE>
        accuracy                           0.67         3
       macro avg       0.75      0.75      0.67         3
    weighted avg       0.83      0.67      0.67         3
    <BLANKLINE>
    """
    true_labels, pred_labels = _check_pair(y_true, y_pred)
    if isinstance(digits, bool) or not isinstance(digits, numbers.Integral):
        raise TypeError(f"digits must be a non-negative int, got {type(digits).__name__}")
    if digits < 0:
        raise ValueError(f"digits must be a non-negative int, got {digits}")
    if target_names is not None:
        target_names = [str(name) for name in target_names]

    largest_label = int(max(true_labels.max(), pred_labels.max()))
    if num_classes is None and target_names is not None:
        if largest_label >= len(target_names):
            raise ValueError(
                f"target_names has {len(target_names)} names, so labels must be smaller "
                f"than {len(target_names)}, got label {largest_label}"
            )
        num_classes = len(target_names)
    num_classes = _check_num_classes(num_classes, largest_label)
    if num_classes is None:
        labels = np.union1d(true_labels, pred_labels)
        matrix = confusion_matrix(true_labels, pred_labels)[np.ix_(labels, labels)]
    else:
        labels = np.arange(num_classes)
        matrix = confusion_matrix(true_labels, pred_labels, num_classes)
    if target_names is None:
        target_names = [str(label) for label in labels]
    elif len(target_names) != labels.size:
        raise ValueError(
            f"target_names must have one name per class row ({labels.size}), "
            f"got {len(target_names)}"
        )

    true_positives = np.diag(matrix)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    precision = _safe_divide(true_positives, predicted)
    recall = _safe_divide(true_positives, support)
    # 2tp / (support + predicted) is the harmonic mean of precision and recall,
    # and is 0 rather than 0/0 when both are 0.
    f1 = _safe_divide(2 * true_positives, support + predicted)
    total = int(support.sum())

    rows = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1-score": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(target_names)
    }
    averages = {
        "macro avg": {
            "precision": float(np.mean(precision)),
            "recall": float(np.mean(recall)),
            "f1-score": float(np.mean(f1)),
            "support": total,
        },
        "weighted avg": {
            "precision": float(np.average(precision, weights=support)),
            "recall": float(np.average(recall, weights=support)),
            "f1-score": float(np.average(f1, weights=support)),
            "support": total,
        },
    }
    accuracy_value = float(true_positives.sum() / total)

    if output_dict:
        return {**rows, "accuracy": accuracy_value, **averages}
    return _format_report(rows, accuracy_value, averages, digits, total)


def _format_report(
    rows: dict, accuracy_value: float, averages: dict, digits: int, total: int
) -> str:
    """Lay out the report as scikit-learn does: right-aligned 9-wide columns."""
    width = max(max(len(name) for name in rows), len("weighted avg"), digits)
    head_fmt = "{:>{width}s} " + " {:>9}" * len(_REPORT_HEADERS)
    row_fmt = "{:>{width}s} " + " {:>9.{digits}f}" * 3 + " {:>9}\n"
    lines = [head_fmt.format("", *_REPORT_HEADERS, width=width), "\n\n"]
    for name, scores in rows.items():
        lines.append(row_fmt.format(name, *scores.values(), width=width, digits=digits))
    lines.append("\n")
    accuracy_fmt = "{:>{width}s} " + " {:>9}" * 2 + " {:>9.{digits}f} {:>9}\n"
    lines.append(
        accuracy_fmt.format("accuracy", "", "", accuracy_value, total, width=width, digits=digits)
    )
    for name, scores in averages.items():
        lines.append(row_fmt.format(name, *scores.values(), width=width, digits=digits))
    return "".join(lines)
