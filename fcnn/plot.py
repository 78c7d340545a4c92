"""Figures of fcnn: training curves, hyper-parameter search curves, first- and
second-layer weights, the confusion matrix and misclassified digits.

Every function builds a new :class:`matplotlib.figure.Figure` and returns it.
The figure is not registered with pyplot, so nothing is left in pyplot's global
state and nothing the caller owns is closed or shown: save it with
``fig.savefig(path)``, or in a notebook make it the last expression of a cell
(or call ``IPython.display.display(fig)``).

Data formats:

* A *history* is a dict of equal-length lists: ``"epoch"`` (1-based ints),
  ``"train_loss"``, ``"train_accuracy"``, ``"val_loss"``, ``"val_accuracy"``,
  ``"test_loss"``, ``"test_accuracy"``, ``"lr"``. Any key may be missing; a
  missing ``"epoch"`` means epochs 1, 2, ... Accuracies are fractions in
  [0, 1], as :func:`fcnn.metrics.accuracy` returns them; they are drawn as
  percentages. ``None`` entries (a metric not measured at some epoch) leave a
  gap.
* A *search record* is ``{"name": str, "params": dict, "history": history}``;
  a search result is a list of records.

Needs matplotlib: ``pip install fcnn[plot]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

try:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "fcnn.plot needs matplotlib; install it with `pip install fcnn[plot]` "
        "or `pip install matplotlib`"
    ) from error

from ._checks import check_int, check_labels

__all__ = [
    "plot_search",
    "plot_loss",
    "plot_accuracy",
    "plot_curves",
    "plot_first_layer_weights",
    "plot_weight_matrix",
    "plot_confusion_matrix",
    "plot_misclassified",
]

_SPLITS = ("train", "val", "test")
_SPLIT_LABELS = {"train": "train", "val": "validation", "test": "test"}
_DIVERGING_CMAP = "RdBu_r"


# ----------------------------------------------------------------------------
# validation helpers


def _check_history(
    history: Mapping, keys: Sequence[str], name: str = "history"
) -> tuple[np.ndarray, dict]:
    """Return (epochs, {key: float array}) for those of ``keys`` present in ``history``.

    Only the epochs and the requested keys are checked, so extra entries a
    trainer may add do not get in the way.

    Raises
    ------
    TypeError
        If ``history`` is not a mapping.
    ValueError
        If a series is not a 1-D list of numbers, the series differ
        in length, or an accuracy is above 1.
    """
    if not isinstance(history, Mapping):
        raise TypeError(f"{name} must be a dict of lists, got {type(history).__name__}")
    series = {}
    for key in keys:
        if key not in history:
            continue
        try:
            array = np.asarray(history[key], dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name}[{key!r}] must be a list of numbers: {error}") from None
        if array.ndim != 1:
            raise ValueError(f"{name}[{key!r}] must be a 1-D list, got shape {array.shape}")
        if key.endswith("accuracy") and np.nanmax(array, initial=0.0) > 1.0:
            raise ValueError(
                f"{name}[{key!r}] must hold fractions in [0, 1], got a maximum of "
                f"{np.nanmax(array):g} (percentages?)"
            )
        series[key] = array
    lengths = {key: array.shape[0] for key, array in series.items()}
    if "epoch" in history:
        epochs = np.asarray(history["epoch"])
        if epochs.ndim != 1:
            raise ValueError(f"{name}['epoch'] must be a 1-D list, got shape {epochs.shape}")
        lengths = {"epoch": epochs.shape[0], **lengths}
    else:
        epochs = np.arange(1, max(lengths.values(), default=0) + 1)
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{name} lists must all have the same length, got lengths {lengths}")
    return epochs, series


def _check_2d(name: str, array: npt.ArrayLike) -> np.ndarray:
    """Return ``array`` as a non-empty 2-D numeric array (dtype kept)."""
    matrix = np.asarray(array)
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {matrix.shape}")
    if matrix.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {matrix.shape}")
    if matrix.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {matrix.dtype}")
    return matrix


def _symmetric_limit(values: np.ndarray) -> float:
    """Largest absolute finite value, so that 0 sits in the middle of a diverging map."""
    finite = np.abs(values[np.isfinite(values)])
    limit = float(finite.max()) if finite.size else 0.0
    return limit if limit > 0.0 else 1.0


def _grid(count: int, ncols: int, tile_inches: float, title_inches: float) -> tuple[Figure, list]:
    """A figure with ``count`` tile axes on a grid of ``ncols`` columns, unused cells removed."""
    ncols = min(ncols, count)
    nrows = math.ceil(count / ncols)
    fig = Figure(
        figsize=(max(ncols * tile_inches, 3.0), nrows * (tile_inches + title_inches) + 0.6),
        layout="constrained",
    )
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for extra in axes[count:]:
        fig.delaxes(extra)
    return fig, list(axes[:count])


def _no_ticks(axes) -> None:
    axes.set_xticks([])
    axes.set_yticks([])


def _epoch_axis(axes) -> None:
    """Epochs are whole numbers: keep the x ticks on integers."""
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(True, alpha=0.3)


def _metric_label(key: str) -> str:
    """``"val_accuracy"`` -> ``"validation accuracy (%)"``."""
    split, _, quantity = key.partition("_")
    words = f"{_SPLIT_LABELS.get(split, split)} {quantity}" if quantity else key
    return f"{words} (%)" if key.endswith("accuracy") else words


def _scaled(key: str, values: np.ndarray) -> np.ndarray:
    """Accuracies are stored as fractions and drawn as percentages."""
    return 100.0 * values if key.endswith("accuracy") else values


# ----------------------------------------------------------------------------
# training curves


def plot_search(
    records: Sequence[Mapping],
    metrics: Sequence[str] = ("train_loss", "train_accuracy"),
    title: str | None = None,
) -> Figure:
    """Compare the candidates of a hyper-parameter search, one line per candidate.

    Parameters
    ----------
    records : Sequence[Mapping]
        Search records ``{"name": str, "params": dict, "history": history}``.
    metrics : Sequence[str]
        History keys to plot, one subplot each, side by side.
    title : str | None
        Figure title.

    Returns
    -------
    Figure
        The figure: one axes per metric, one line per record that has the
        metric, labelled by the record's name in a legend on the right.

    Raises
    ------
    TypeError
        If ``records`` is not a list of dicts or a metric is not a str.
    ValueError
        If ``records`` or ``metrics`` is empty, a record lacks
        ``"name"`` or ``"history"``, a history is malformed, or no record
        has one of the metrics.
    """
    if isinstance(records, Mapping) or not isinstance(records, Sequence):
        raise TypeError(f"records must be a list of search records, got {type(records).__name__}")
    if len(records) == 0:
        raise ValueError("records must hold at least one search record, got an empty list")
    if isinstance(metrics, str):
        metrics = (metrics,)
    if len(metrics) == 0:
        raise ValueError("metrics must name at least one history key, got none")
    for metric in metrics:
        if not isinstance(metric, str):
            raise TypeError(f"metrics must be history keys (str), got {metric!r}")

    curves = []
    for index, record in enumerate(records):
        if not isinstance(record, Mapping) or "name" not in record or "history" not in record:
            raise ValueError(
                f'records[{index}] must be a dict with keys "name" and "history", '
                f"got {record!r:.80}"
            )
        epochs, series = _check_history(record["history"], metrics, f"records[{index}]['history']")
        curves.append((str(record["name"]), epochs, series))
    for metric in metrics:
        if not any(metric in series for _, _, series in curves):
            raise ValueError(f"no record's history has the metric {metric!r}")

    fig = Figure(figsize=(4.5 * len(metrics) + 2.0, 4.0), layout="constrained")
    axes_row = fig.subplots(1, len(metrics), squeeze=False)[0]
    for axes, metric in zip(axes_row, metrics, strict=True):
        # The same colour stays with the same candidate across subplots.
        for color_index, (name, epochs, series) in enumerate(curves):
            if metric in series:
                axes.plot(
                    epochs,
                    _scaled(metric, series[metric]),
                    label=name,
                    color=f"C{color_index % 10}",
                    marker="." if len(epochs) < 30 else None,
                )
        _epoch_axis(axes)
        axes.set_ylabel(_metric_label(metric))
        axes.set_title(_metric_label(metric))
    handles, labels = axes_row[0].get_legend_handles_labels()
    for axes in axes_row[1:]:
        for handle, label in zip(*axes.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.legend(handles, labels, loc="outside right upper", fontsize="small")
    if title is not None:
        fig.suptitle(title)
    return fig


def _plot_splits(history: Mapping, quantity: str, title: str, axes=None) -> Figure:
    """One line per ``<split>_<quantity>`` key of ``history``, split = train, val, test.

    Draws into ``axes`` when given (and returns its figure), else into a new figure.
    """
    epochs, series = _check_history(history, [f"{split}_{quantity}" for split in _SPLITS])
    keys = list(series)
    if not keys:
        expected = ", ".join(f"{split}_{quantity}" for split in _SPLITS)
        raise ValueError(
            f"history must have at least one of {expected}; got keys {sorted(history)}"
        )
    if axes is None:
        fig = Figure(figsize=(6.0, 4.0), layout="constrained")
        axes = fig.subplots()
    else:
        fig = axes.figure
    for key in keys:
        split = key.partition("_")[0]
        axes.plot(
            epochs,
            _scaled(key, series[key]),
            label=_SPLIT_LABELS[split],
            marker="." if len(epochs) < 30 else None,
        )
    _epoch_axis(axes)
    axes.set_ylabel(f"{quantity} (%)" if quantity == "accuracy" else quantity)
    axes.set_title(title)
    axes.legend()
    return fig


def plot_loss(history: Mapping) -> Figure:
    """Train, validation and test loss per epoch, for whichever of them the history has.

    Parameters
    ----------
    history : Mapping
        A history dict (see the module docstring).

    Returns
    -------
    Figure
        The figure: one axes, one line per split present.

    Raises
    ------
    TypeError
        If ``history`` is not a dict.
    ValueError
        If it has none of ``train_loss``, ``val_loss``,
        ``test_loss``, or its lists differ in length.
    """
    return _plot_splits(history, "loss", "Loss per epoch")


def plot_accuracy(history: Mapping) -> Figure:
    """Train, validation and test accuracy per epoch, in percent.

    Parameters
    ----------
    history : Mapping
        A history dict (see the module docstring); accuracies are
        fractions in [0, 1].

    Returns
    -------
    Figure
        The figure: one axes, one line per split present.

    Raises
    ------
    TypeError
        If ``history`` is not a dict.
    ValueError
        If it has none of ``train_accuracy``, ``val_accuracy``,
        ``test_accuracy``, its lists differ in length, or an accuracy is
        above 1.
    """
    return _plot_splits(history, "accuracy", "Accuracy per epoch")


def plot_curves(history: Mapping) -> Figure:
    """Loss (left) and accuracy (right) per epoch side by side: ``fcnn train``'s curves.png.

    Parameters
    ----------
    history : Mapping
        A history dict (see the module docstring) with at least one
        loss and one accuracy key.

    Returns
    -------
    Figure
        The figure: two axes, one line per split present in each.

    Raises
    ------
    TypeError, ValueError
        as :func:`plot_loss` and :func:`plot_accuracy`.
    """
    fig = Figure(figsize=(11.0, 4.0), layout="constrained")
    loss_axes, accuracy_axes = fig.subplots(1, 2)
    _plot_splits(history, "loss", "Loss per epoch", axes=loss_axes)
    _plot_splits(history, "accuracy", "Accuracy per epoch", axes=accuracy_axes)
    return fig


# ----------------------------------------------------------------------------
# weights


def plot_first_layer_weights(
    weight: npt.ArrayLike,
    image_shape: tuple[int, int] = (28, 28),
    max_units: int = 64,
    ncols: int = 8,
) -> Figure:
    """Show the input filters of the first hidden units as images.

    Each filter gets its own symmetric colour range [-m, m], m its largest
    absolute weight, on a diverging colormap: red is positive, blue negative,
    white zero.

    Parameters
    ----------
    weight : npt.ArrayLike
        First-layer weight, shape (C, H) = (input features, hidden
        units); column j is unit j's filter, C = prod(image_shape).
    image_shape : tuple[int, int]
        (height, width) each filter is reshaped to.
    max_units : int
        Show at most this many units, the first ones.
    ncols : int
        Number of columns of the grid.

    Returns
    -------
    Figure
        The figure: one image axes per unit shown, no ticks.

    Raises
    ------
    TypeError
        If ``weight`` is not numeric, or a setting is not an int.
    ValueError
        If ``weight`` is not 2-D, is empty, or its number of rows
        is not prod(image_shape), or a setting is not positive.
    """
    weight = _check_2d("weight", weight)
    if len(image_shape) != 2:
        raise ValueError(f"image_shape must be (height, width), got {image_shape!r}")
    height = check_int(image_shape[0], "image_shape[0]", minimum=1)
    width = check_int(image_shape[1], "image_shape[1]", minimum=1)
    max_units = check_int(max_units, "max_units", minimum=1)
    ncols = check_int(ncols, "ncols", minimum=1)
    if weight.shape[0] != height * width:
        raise ValueError(
            f"weight must have shape ({height * width}, hidden units) for image_shape "
            f"{(height, width)}, got {weight.shape}"
            + (" (transposed?)" if weight.shape[1] == height * width else "")
        )
    hidden_units = weight.shape[1]
    count = min(hidden_units, max_units)
    fig, tiles = _grid(count, ncols, tile_inches=1.1, title_inches=0.2)
    for unit, axes in enumerate(tiles):
        unit_filter = weight[:, unit].astype(np.float64).reshape(height, width)
        limit = _symmetric_limit(unit_filter)
        axes.imshow(unit_filter, cmap=_DIVERGING_CMAP, vmin=-limit, vmax=limit)
        axes.set_title(f"unit {unit}", fontsize="x-small", pad=2)
        _no_ticks(axes)
    fig.suptitle(f"First-layer weights: units 0-{count - 1} of {hidden_units}")
    return fig


def plot_weight_matrix(weight: npt.ArrayLike) -> Figure:
    """Heatmap of a weight matrix, e.g. the second layer (H, 10), with a colorbar.

    The colour range is symmetric around 0 on a diverging colormap.

    Parameters
    ----------
    weight : npt.ArrayLike
        Weight matrix of shape (C, OC) = (inputs, outputs).

    Returns
    -------
    Figure
        The figure: the heatmap axes and its colorbar axes.

    Raises
    ------
    TypeError
        If ``weight`` is not numeric.
    ValueError
        If ``weight`` is not 2-D or is empty.
    """
    weight = _check_2d("weight", weight).astype(np.float64)
    inputs, outputs = weight.shape
    # Tall (H, 10) matrices stay readable at a fixed height: stretch the columns.
    fig = Figure(figsize=(min(max(3.5 + 0.25 * outputs, 5.0), 12.0), 6.0), layout="constrained")
    axes = fig.subplots()
    limit = _symmetric_limit(weight)
    image = axes.imshow(
        weight,
        cmap=_DIVERGING_CMAP,
        vmin=-limit,
        vmax=limit,
        aspect="auto",
        interpolation="nearest",
    )
    fig.colorbar(image, ax=axes, label="weight")
    axes.set_xlabel("output unit (column)")
    axes.set_ylabel("input unit (row)")
    axes.set_title(f"Weight matrix {inputs} × {outputs}")
    if outputs <= 20:
        axes.set_xticks(range(outputs))
    return fig


# ----------------------------------------------------------------------------
# predictions


def plot_confusion_matrix(
    cm: npt.ArrayLike,
    class_names: Sequence[str] | None = None,
    normalize: bool = False,
) -> Figure:
    """Heatmap of a confusion matrix with the value written in every cell.

    Counts are written as plain integers ("1023", never "1e+03"); each text is
    black or white, whichever contrasts with its cell's colour.

    Parameters
    ----------
    cm : npt.ArrayLike
        Counts, shape (K, K), rows = true class, columns = predicted (as
        :func:`fcnn.metrics.confusion_matrix` returns). Integer-valued
        floats are accepted.
    class_names : Sequence[str] | None
        Tick label of each class. Default: "0" .. "K-1".
    normalize : bool
        Colour and label each cell by its share of its row (the
        recall of the true class), as a fraction with 2 decimals, instead
        of by the raw count. A row with no samples shows 0.00.

    Returns
    -------
    Figure
        The figure: the heatmap axes and its colorbar axes; K * K cell texts.

    Raises
    ------
    TypeError
        If ``cm`` is not numeric.
    ValueError
        If ``cm`` is not square and 2-D, is empty, holds a
        negative, non-finite or non-integer count, or ``class_names`` does
        not have K names.
    """
    counts = _check_2d("cm", cm)
    if counts.shape[0] != counts.shape[1]:
        raise ValueError(f"cm must be a square (K, K) matrix, got shape {counts.shape}")
    if counts.dtype.kind == "f":
        if not np.all(np.isfinite(counts)) or np.any(counts != np.round(counts)):
            raise ValueError("cm must hold integer counts, got non-integer or non-finite values")
    counts = counts.astype(np.int64)
    if counts.min() < 0:
        raise ValueError(f"cm must hold non-negative counts, got minimum {counts.min()}")
    num_classes = counts.shape[0]
    if class_names is None:
        class_names = [str(index) for index in range(num_classes)]
    class_names = [str(name) for name in class_names]
    if len(class_names) != num_classes:
        raise ValueError(
            f"class_names must have {num_classes} names (one per row of cm), got {len(class_names)}"
        )

    if normalize:
        row_totals = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, row_totals, out=np.zeros(counts.shape), where=row_totals != 0)
        texts = [f"{value:.2f}" for value in values.ravel()]
        color_limits = (0.0, 1.0)
    else:
        values = counts
        texts = [f"{count:d}" for count in counts.ravel().tolist()]
        color_limits = (0, max(int(counts.max()), 1))

    side = min(max(0.55 * num_classes + 2.5, 4.5), 14.0)
    fig = Figure(figsize=(side + 1.0, side), layout="constrained")
    axes = fig.subplots()
    image = axes.imshow(values, cmap="Blues", vmin=color_limits[0], vmax=color_limits[1])
    fig.colorbar(image, ax=axes, label="share of true class" if normalize else "count", shrink=0.8)

    # Shrink the digits so the longest text fits its cell: about 0.55 inch per
    # cell at K=10, and one digit is about 0.6 em wide.
    cell_points = 72.0 * side * 0.75 / num_classes
    longest = max(len(text) for text in texts)
    font_size = float(np.clip(cell_points / (0.62 * longest + 0.6), 4.0, 11.0))
    colormap, norm = image.get_cmap(), image.norm
    for (row, column), text in zip(np.ndindex(values.shape), texts, strict=True):
        red, green, blue, _ = colormap(norm(values[row, column]))
        luminance = 0.299 * red + 0.587 * green + 0.114 * blue
        axes.text(
            column,
            row,
            text,
            ha="center",
            va="center",
            fontsize=font_size,
            color="white" if luminance < 0.5 else "black",
        )

    # Slanted column labels keep long class names from running into each other.
    slanted = max(len(name) for name in class_names) > 3
    axes.set_xticks(
        range(num_classes),
        class_names,
        rotation=45 if slanted else 0,
        ha="right" if slanted else "center",
    )
    axes.set_yticks(range(num_classes), class_names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title("Confusion matrix" + (" (normalised by row)" if normalize else ""))
    return fig


def _as_images(images: npt.ArrayLike) -> np.ndarray:
    """Return ``images`` as (N, height, width); (N, D) with D a square is reshaped."""
    array = np.asarray(images)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"images must hold numbers, got dtype {array.dtype}")
    if array.ndim == 3:
        return array
    if array.ndim == 2:
        side = math.isqrt(array.shape[1])
        if side * side == array.shape[1] and side > 0:
            return array.reshape(array.shape[0], side, side)
        raise ValueError(
            f"images of shape (N, D) need D to be a square number of pixels "
            f"(784 = 28 * 28), got shape {array.shape}"
        )
    raise ValueError(f"images must have shape (N, 28, 28) or (N, 784), got shape {array.shape}")


def plot_misclassified(
    images: npt.ArrayLike,
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    max_images: int = 25,
    ncols: int = 5,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """Grid of the first misclassified images, each titled "true X / pred Y".

    Parameters
    ----------
    images : npt.ArrayLike
        Shape (N, 28, 28) or (N, 784) (any (N, H, W), or (N, D) with D
        a square); uint8 (drawn on 0..255) or float (drawn on the range of
        the images shown).
    y_true : npt.ArrayLike
        True class indices, shape (N,).
    y_pred : npt.ArrayLike
        Predicted class indices, shape (N,).
    max_images : int
        Show at most this many, in dataset order.
    ncols : int
        Number of columns of the grid.
    class_names : Sequence[str] | None
        Name of each class index, used in the titles.

    Returns
    -------
    Figure
        The figure: one axes per image shown; if nothing is misclassified, a
        single empty axes saying so.

    Raises
    ------
    TypeError
        If ``images`` or a label array is not numeric/integer, or a
        setting is not an int.
    ValueError
        If the shapes do not agree, a label is negative or has no
        class name, or a setting is not positive.
    """
    pixels = _as_images(images)
    true_labels = check_labels("y_true", y_true)
    pred_labels = check_labels("y_pred", y_pred)
    if not (pixels.shape[0] == true_labels.shape[0] == pred_labels.shape[0]):
        raise ValueError(
            f"images, y_true and y_pred must have the same length, got {pixels.shape[0]}, "
            f"{true_labels.shape[0]} and {pred_labels.shape[0]}"
        )
    max_images = check_int(max_images, "max_images", minimum=1)
    ncols = check_int(ncols, "ncols", minimum=1)
    if class_names is not None:
        class_names = [str(name) for name in class_names]
        largest_label = int(max(true_labels.max(), pred_labels.max()))
        if largest_label >= len(class_names):
            raise ValueError(f"class_names has {len(class_names)} names, got label {largest_label}")

    wrong = np.flatnonzero(true_labels != pred_labels)
    if wrong.size == 0:
        fig = Figure(figsize=(4.0, 1.5), layout="constrained")
        axes = fig.subplots()
        axes.text(
            0.5,
            0.5,
            f"No misclassified images\n(all {pixels.shape[0]} correct)",
            ha="center",
            va="center",
            transform=axes.transAxes,
        )
        axes.set_axis_off()
        return fig

    shown = wrong[:max_images]
    if pixels.dtype == np.uint8:
        low, high = 0, 255
    else:
        selected = pixels[shown].astype(np.float64)
        low, high = float(np.nanmin(selected)), float(np.nanmax(selected))
    fig, tiles = _grid(shown.size, ncols, tile_inches=1.5, title_inches=0.35)
    for index, axes in zip(shown, tiles, strict=True):
        true_name, pred_name = (
            (class_names[true_labels[index]], class_names[pred_labels[index]])
            if class_names is not None
            else (true_labels[index], pred_labels[index])
        )
        axes.imshow(pixels[index], cmap="gray_r", vmin=low, vmax=high)
        axes.set_title(f"true {true_name} / pred {pred_name}", fontsize="small", pad=3)
        _no_ticks(axes)
    fig.suptitle(f"Misclassified: {shown.size} shown of {wrong.size} (of {pixels.shape[0]} images)")
    return fig
