"""fcnn.plot: each figure's structure (axes, lines, images, cell texts), bad
input, PNG output, and that nothing is left in pyplot's global state."""

import numpy as np
import pytest

matplotlib = pytest.importorskip(
    "matplotlib", reason="the figures need matplotlib: pip install 'fcnn[plot]'"
)
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from fcnn.plot import (  # noqa: E402
    plot_accuracy,
    plot_confusion_matrix,
    plot_first_layer_weights,
    plot_loss,
    plot_misclassified,
    plot_search,
    plot_weight_matrix,
)


def make_history(epochs=4, splits=("train", "val", "test"), offset=0.0):
    history = {"epoch": list(range(1, epochs + 1)), "lr": [0.1] * epochs}
    for index, split in enumerate(splits):
        history[f"{split}_loss"] = [
            1.0 / (epoch + index) + offset for epoch in range(1, epochs + 1)
        ]
        history[f"{split}_accuracy"] = [0.5 + 0.1 * epoch - 0.01 * index for epoch in range(epochs)]
    return history


def make_records():
    return [
        {"name": "hidden=128", "params": {"hidden_size": 128}, "history": make_history()},
        {"name": "hidden=512", "params": {"hidden_size": 512}, "history": make_history(offset=0.2)},
        # No accuracy recorded: that candidate only appears on the loss subplot.
        {"name": "loss only", "params": {}, "history": {"epoch": [1, 2], "train_loss": [0.9, 0.8]}},
    ]


def make_digits(count=12, flat=False, dtype=np.uint8):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(count, 28, 28)).astype(dtype)
    return images.reshape(count, 784) if flat else images


# Labels for make_digits(12): samples 1, 2, 4, 7, 8, 10, 11 are wrong.
Y_TRUE = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1])
Y_PRED = np.array([0, 7, 3, 3, 9, 5, 6, 1, 3, 9, 6, 2])
WRONG = [1, 2, 4, 7, 8, 10, 11]


def line_labels(axes):
    return [line.get_label() for line in axes.get_lines()]


# ----------------------------------------------------------------------------
# curves


def test_plot_search_one_subplot_per_metric_one_line_per_candidate():
    fig = plot_search(make_records(), title="search")
    assert isinstance(fig, Figure)
    loss_axes, accuracy_axes = fig.axes
    assert line_labels(loss_axes) == ["hidden=128", "hidden=512", "loss only"]
    assert line_labels(accuracy_axes) == ["hidden=128", "hidden=512"]
    np.testing.assert_allclose(loss_axes.get_lines()[0].get_xdata(), [1, 2, 3, 4])
    # Accuracies are drawn in percent.
    np.testing.assert_allclose(accuracy_axes.get_lines()[0].get_ydata(), [50, 60, 70, 80])
    # A candidate keeps its colour from one subplot to the next.
    assert loss_axes.get_lines()[1].get_color() == accuracy_axes.get_lines()[1].get_color()
    legend_texts = [text.get_text() for text in fig.legends[0].get_texts()]
    assert legend_texts == ["hidden=128", "hidden=512", "loss only"]
    assert fig.get_suptitle() == "search"


def test_plot_search_other_metrics():
    fig = plot_search(make_records()[:2], metrics=("train_loss", "val_loss", "val_accuracy"))
    assert len(fig.axes) == 3
    assert all(len(axes.get_lines()) == 2 for axes in fig.axes)
    assert fig.axes[2].get_ylabel() == "validation accuracy (%)"


@pytest.mark.parametrize(
    ("records", "metrics", "error", "message"),
    [
        ([], ("train_loss",), ValueError, "at least one search record"),
        ({"name": "a"}, ("train_loss",), TypeError, "records must be a list"),
        (
            [{"name": "a"}],
            ("train_loss",),
            ValueError,
            r'records\[0\] must be a dict with keys "name" and "history"',
        ),
        (
            [{"name": "a", "history": {"train_loss": [1.0]}}],
            ("val_loss",),
            ValueError,
            "no record's history has the metric 'val_loss'",
        ),
        (
            [{"name": "a", "history": {"epoch": [1, 2], "train_loss": [1.0]}}],
            ("train_loss",),
            ValueError,
            "same length",
        ),
        (
            [{"name": "a", "history": {"train_loss": [1.0]}}],
            (),
            ValueError,
            "metrics must name at least one",
        ),
    ],
)
def test_plot_search_bad_input(records, metrics, error, message):
    with pytest.raises(error, match=message):
        plot_search(records, metrics=metrics)


def test_plot_loss_draws_the_splits_present():
    fig = plot_loss(make_history(splits=("train", "val")))
    (axes,) = fig.axes
    assert line_labels(axes) == ["train", "validation"]
    assert axes.get_xlabel() == "epoch" and axes.get_ylabel() == "loss"
    np.testing.assert_allclose(axes.get_lines()[1].get_ydata(), [1 / 2, 1 / 3, 1 / 4, 1 / 5])


def test_plot_loss_without_epoch_key_counts_from_one():
    fig = plot_loss({"test_loss": [0.5, 0.4, None]})
    line = fig.axes[0].get_lines()[0]
    np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3])
    assert np.isnan(line.get_ydata()[2])


def test_plot_accuracy_in_percent():
    fig = plot_accuracy(make_history())
    (axes,) = fig.axes
    assert line_labels(axes) == ["train", "validation", "test"]
    np.testing.assert_allclose(axes.get_lines()[0].get_ydata(), [50, 60, 70, 80])
    assert axes.get_ylabel() == "accuracy (%)"


@pytest.mark.parametrize(
    ("function", "history", "error", "message"),
    [
        (
            plot_loss,
            {"train_accuracy": [0.5]},
            ValueError,
            "at least one of train_loss, val_loss, test_loss",
        ),
        (plot_accuracy, {"train_loss": [0.5]}, ValueError, "at least one of train_accuracy"),
        (
            plot_accuracy,
            {"train_accuracy": [50.0, 60.0]},
            ValueError,
            r"fractions in \[0, 1\], got a maximum of 60",
        ),
        (plot_loss, {"train_loss": [1.0, 0.5], "val_loss": [1.0]}, ValueError, "same length"),
        (plot_loss, {"train_loss": [[1.0]]}, ValueError, "1-D list"),
        (plot_loss, [0.5, 0.4], TypeError, "history must be a dict of lists, got list"),
    ],
)
def test_curves_bad_input(function, history, error, message):
    with pytest.raises(error, match=message):
        function(history)


# ----------------------------------------------------------------------------
# weights


def test_plot_first_layer_weights_grid():
    rng = np.random.default_rng(1)
    weight = rng.normal(size=(784, 12)).astype(np.float32)
    fig = plot_first_layer_weights(weight, max_units=6, ncols=4)
    assert len(fig.axes) == 6
    for unit, axes in enumerate(fig.axes):
        (image,) = axes.get_images()
        np.testing.assert_array_equal(image.get_array(), weight[:, unit].reshape(28, 28))
        limit = np.abs(weight[:, unit]).max()
        np.testing.assert_allclose(image.get_clim(), (-limit, limit), rtol=1e-6)
        assert image.get_cmap().name == "RdBu_r"
        assert len(axes.get_xticks()) == 0 and len(axes.get_yticks()) == 0
    # Fewer units than max_units: all of them.
    assert len(plot_first_layer_weights(weight[:, :3]).axes) == 3
    # Another image shape; an all-zero filter must not divide by zero.
    zero_fig = plot_first_layer_weights(np.zeros((12, 2)), image_shape=(3, 4))
    assert zero_fig.axes[0].get_images()[0].get_array().shape == (3, 4)


@pytest.mark.parametrize(
    ("weight", "kwargs", "error", "message"),
    [
        (
            np.zeros((10, 784)),
            {},
            ValueError,
            r"weight must have shape \(784, hidden units\).*got \(10, 784\) \(transposed\?\)",
        ),
        (np.zeros(784), {}, ValueError, r"weight must be a 2-D array, got shape \(784,\)"),
        (np.zeros((784, 0)), {}, ValueError, "weight must not be empty"),
        (
            np.zeros((784, 4)),
            {"max_units": 0},
            ValueError,
            "max_units must be an integer >= 1, got 0",
        ),
        (np.zeros((784, 4)), {"ncols": 2.5}, TypeError, "ncols must be an integer, got float"),
        (np.zeros((784, 4)), {"image_shape": (28,)}, ValueError, "image_shape must be"),
    ],
)
def test_plot_first_layer_weights_bad_input(weight, kwargs, error, message):
    with pytest.raises(error, match=message):
        plot_first_layer_weights(weight, **kwargs)


def test_plot_weight_matrix():
    weight = np.random.default_rng(2).normal(size=(16, 10))
    fig = plot_weight_matrix(weight)
    heatmap, colorbar = fig.axes
    (image,) = heatmap.get_images()
    np.testing.assert_array_equal(image.get_array(), weight)
    limit = np.abs(weight).max()
    np.testing.assert_allclose(image.get_clim(), (-limit, limit))
    assert heatmap.get_xlabel() and heatmap.get_ylabel()
    assert colorbar.get_ylabel() == "weight"
    with pytest.raises(ValueError, match=r"weight must be a 2-D array, got shape \(2, 3, 4\)"):
        plot_weight_matrix(np.zeros((2, 3, 4)))
    with pytest.raises(TypeError, match="weight must hold real numbers"):
        plot_weight_matrix(np.array([["a", "b"]]))


# ----------------------------------------------------------------------------
# predictions


def cell_texts(axes):
    return [text.get_text() for text in axes.texts]


def test_plot_confusion_matrix_counts_as_plain_integers():
    cm = np.array([[1023, 0, 7], [12, 1000, 100000], [0, 5, 999]])
    fig = plot_confusion_matrix(cm, class_names=["zero", "one", "two"])
    heatmap, colorbar = fig.axes
    assert cell_texts(heatmap) == ["1023", "0", "7", "12", "1000", "100000", "0", "5", "999"]
    assert heatmap.get_xlabel() == "predicted class" and heatmap.get_ylabel() == "true class"
    assert [tick.get_text() for tick in heatmap.get_xticklabels()] == ["zero", "one", "two"]
    # Contrast: white on the darkest cell, black on the empty ones.
    texts = {text.get_text(): text for text in heatmap.texts}
    assert matplotlib.colors.to_hex(texts["100000"].get_color()) == "#ffffff"
    assert matplotlib.colors.to_hex(texts["7"].get_color()) == "#000000"
    # Integer-valued floats are counts too.
    float_fig = plot_confusion_matrix(cm.astype(np.float64))
    assert cell_texts(float_fig.axes[0]) == cell_texts(heatmap)


def test_plot_confusion_matrix_normalized():
    fig = plot_confusion_matrix(np.array([[3, 1], [0, 0]]), normalize=True)
    assert cell_texts(fig.axes[0]) == ["0.75", "0.25", "0.00", "0.00"]


@pytest.mark.parametrize(
    ("cm", "kwargs", "message"),
    [
        (
            np.zeros((2, 3), dtype=int),
            {},
            r"cm must be a square \(K, K\) matrix, got shape \(2, 3\)",
        ),
        (np.array([[1, -1], [0, 2]]), {}, "non-negative counts, got minimum -1"),
        (np.array([[1.5, 0.0], [0.0, 2.0]]), {}, "integer counts"),
        (np.array([[np.nan, 0.0], [0.0, 2.0]]), {}, "integer counts"),
        (np.eye(3, dtype=int), {"class_names": ["a", "b"]}, "class_names must have 3 names"),
    ],
)
def test_plot_confusion_matrix_bad_input(cm, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plot_confusion_matrix(cm, **kwargs)


@pytest.mark.parametrize("flat", [False, True])
def test_plot_misclassified_grid(flat):
    images = make_digits(flat=flat)
    fig = plot_misclassified(images, Y_TRUE, Y_PRED, max_images=5, ncols=3)
    assert len(fig.axes) == 5
    titles = [axes.get_title() for axes in fig.axes]
    assert titles == [f"true {Y_TRUE[i]} / pred {Y_PRED[i]}" for i in WRONG[:5]]
    first_image = fig.axes[0].get_images()[0]
    np.testing.assert_array_equal(first_image.get_array(), images[WRONG[0]].reshape(28, 28))
    assert first_image.get_clim() == (0, 255)
    assert "5 shown of 7" in fig.get_suptitle()


def test_plot_misclassified_all_of_them_with_names_and_floats():
    images = make_digits(dtype=np.float32) / 255.0
    names = [f"digit {index}" for index in range(10)]
    fig = plot_misclassified(images, Y_TRUE, Y_PRED, class_names=names)
    assert len(fig.axes) == len(WRONG)
    assert fig.axes[0].get_title() == "true digit 1 / pred digit 7"


def test_plot_misclassified_none_wrong():
    fig = plot_misclassified(make_digits(), Y_TRUE, Y_TRUE)
    (axes,) = fig.axes
    assert not axes.get_images()
    assert "No misclassified images" in cell_texts(axes)[0]


@pytest.mark.parametrize(
    ("images", "y_true", "y_pred", "kwargs", "error", "message"),
    [
        (
            make_digits(),
            Y_TRUE[:5],
            Y_PRED,
            {},
            ValueError,
            "images, y_true and y_pred must have the same length, got 12, 5 and 12",
        ),
        (
            np.zeros((12, 783)),
            Y_TRUE,
            Y_PRED,
            {},
            ValueError,
            r"square number of pixels .* got shape \(12, 783\)",
        ),
        (
            np.zeros((12, 1, 28, 28)),
            Y_TRUE,
            Y_PRED,
            {},
            ValueError,
            r"images must have shape \(N, 28, 28\) or \(N, 784\)",
        ),
        (
            make_digits(),
            Y_TRUE.astype(float),
            Y_PRED,
            {},
            TypeError,
            "y_true must hold integer class indices",
        ),
        (
            make_digits(),
            Y_TRUE,
            Y_PRED,
            {"max_images": 0},
            ValueError,
            "max_images must be an integer >= 1",
        ),
        (
            make_digits(),
            Y_TRUE,
            Y_PRED,
            {"class_names": ["a", "b"]},
            ValueError,
            "class_names has 2 names, got label 9",
        ),
    ],
)
def test_plot_misclassified_bad_input(images, y_true, y_pred, kwargs, error, message):
    with pytest.raises(error, match=message):
        plot_misclassified(images, y_true, y_pred, **kwargs)


# ----------------------------------------------------------------------------
# output and global state

BUILDERS = {
    "search": lambda: plot_search(make_records()),
    "loss": lambda: plot_loss(make_history()),
    "accuracy": lambda: plot_accuracy(make_history()),
    "first_layer_weights": lambda: plot_first_layer_weights(
        np.random.default_rng(3).normal(size=(784, 4))
    ),
    "weight_matrix": lambda: plot_weight_matrix(np.random.default_rng(4).normal(size=(16, 10))),
    "confusion_matrix": lambda: plot_confusion_matrix(np.array([[1000, 3], [12, 987]])),
    "misclassified": lambda: plot_misclassified(make_digits(), Y_TRUE, Y_PRED),
    "misclassified_none": lambda: plot_misclassified(make_digits(), Y_TRUE, Y_TRUE),
}


@pytest.mark.parametrize("name", BUILDERS)
def test_saves_png_and_leaves_pyplot_alone(name, tmp_path):
    user_figure = plt.figure()
    open_before = plt.get_fignums()
    fig = BUILDERS[name]()
    assert isinstance(fig, Figure)
    path = tmp_path / f"{name}.png"
    fig.savefig(path, dpi=40)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 1000
    # Not registered with pyplot, and the caller's own figure is still open.
    assert plt.get_fignums() == open_before
    plt.close(user_figure)
