"""fcnn.metrics: hand-computed reports, zero-division cases, bad input, and
scikit-learn agreement when scikit-learn happens to be installed."""

import numpy as np
import pytest

from fcnn.metrics import accuracy, classification_report, confusion_matrix

# Class 2 is never predicted, so its precision is 0/0.
Y_TRUE = [0, 0, 1, 1, 1, 2]
Y_PRED = [0, 1, 1, 1, 0, 1]

# Worked by hand: tp = [1, 2, 0], support = [2, 3, 1], predicted = [2, 4, 0].
EXPECTED_REPORT = """\
              precision    recall  f1-score   support

           0       0.50      0.50      0.50         2
           1       0.50      0.67      0.57         3
           2       0.00      0.00      0.00         1

    accuracy                           0.50         6
   macro avg       0.33      0.39      0.36         6
weighted avg       0.42      0.50      0.45         6
"""


def test_accuracy_hand_computed():
    assert accuracy(Y_TRUE, Y_PRED) == 0.5
    assert accuracy([3], [3]) == 1.0
    assert accuracy(np.array([1, 2], dtype=np.uint8), np.array([2, 2], dtype=np.int32)) == 0.5
    assert type(accuracy(Y_TRUE, Y_PRED)) is float


def test_confusion_matrix_hand_computed():
    matrix = confusion_matrix(Y_TRUE, Y_PRED)
    expected = np.array([[1, 1, 0], [1, 2, 0], [0, 1, 0]])
    np.testing.assert_array_equal(matrix, expected)
    assert matrix.dtype == np.int64
    assert matrix.shape == (3, 3)


def test_confusion_matrix_size_from_either_array_and_num_classes():
    # The largest label is only in y_pred: K must still cover it.
    np.testing.assert_array_equal(
        confusion_matrix([0, 0], [0, 2]), [[1, 0, 1], [0, 0, 0], [0, 0, 0]]
    )
    padded = confusion_matrix([1, 1], [1, 0], num_classes=4)
    assert padded.shape == (4, 4)
    assert padded[1, 1] == 1 and padded[1, 0] == 1 and padded.sum() == 2


def test_report_text_hand_computed():
    assert classification_report(Y_TRUE, Y_PRED) == EXPECTED_REPORT


@pytest.mark.filterwarnings("error")
def test_report_dict_hand_computed_with_class_never_predicted():
    report = classification_report(Y_TRUE, Y_PRED, output_dict=True)
    assert list(report) == ["0", "1", "2", "accuracy", "macro avg", "weighted avg"]
    assert report["0"] == {"precision": 0.5, "recall": 0.5, "f1-score": 0.5, "support": 2}
    assert report["1"] == pytest.approx(
        {"precision": 0.5, "recall": 2 / 3, "f1-score": 4 / 7, "support": 3}, rel=1e-15
    )
    assert report["2"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 1}
    assert report["accuracy"] == 0.5
    assert report["macro avg"] == pytest.approx(
        {"precision": 1 / 3, "recall": 7 / 18, "f1-score": 5 / 14, "support": 6}, rel=1e-15
    )
    assert report["weighted avg"] == pytest.approx(
        {"precision": 5 / 12, "recall": 0.5, "f1-score": 19 / 42, "support": 6}, rel=1e-15
    )
    assert type(report["1"]["precision"]) is float
    assert type(report["1"]["support"]) is int


@pytest.mark.filterwarnings("error")
def test_report_class_absent_from_y_true():
    # Class 2 is predicted once but never true: recall is 0/0.
    report = classification_report([0, 0, 1], [0, 2, 1], output_dict=True)
    assert report["2"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0}
    assert report["0"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1-score": 2 / 3, "support": 2}
    )
    assert report["accuracy"] == pytest.approx(2 / 3)
    assert report["macro avg"] == pytest.approx(
        {"precision": 2 / 3, "recall": 0.5, "f1-score": 5 / 9, "support": 3}
    )
    assert report["weighted avg"] == pytest.approx(
        {"precision": 1.0, "recall": 2 / 3, "f1-score": 7 / 9, "support": 3}
    )


def test_report_perfect_predictions():
    labels = np.array([0, 1, 2, 2, 1, 0, 0])
    report = classification_report(labels, labels, output_dict=True)
    for name in ("0", "1", "2", "macro avg", "weighted avg"):
        assert (
            report[name]["precision"] == report[name]["recall"] == report[name]["f1-score"] == 1.0
        )
    assert report["accuracy"] == 1.0
    assert "1.00      1.00      1.00         7" in classification_report(labels, labels)


def test_report_rows_follow_labels_present_unless_classes_given():
    # Default: only the labels seen (as scikit-learn), here 1 and 3.
    assert [key for key in classification_report([1, 3], [1, 1], output_dict=True)][:2] == [
        "1",
        "3",
    ]
    # num_classes: every class gets a row; the unseen ones count as 0 in the macro average.
    report = classification_report([1, 3], [1, 3], output_dict=True, num_classes=5)
    assert [key for key in report][:5] == ["0", "1", "2", "3", "4"]
    assert report["2"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0}
    assert report["macro avg"]["precision"] == pytest.approx(2 / 5)
    assert report["weighted avg"]["precision"] == 1.0


def test_report_target_names_and_alignment():
    names = ["zero", "one", "a rather long name"]
    text = classification_report(Y_TRUE, Y_PRED, target_names=names, digits=3)
    lines = [line for line in text.splitlines() if line]
    assert len(lines) == 7
    assert len({len(line) for line in lines}) == 1, text
    assert lines[3].startswith("a rather long name      0.000     0.000     0.000         1")
    report = classification_report(Y_TRUE, Y_PRED, target_names=names, output_dict=True)
    assert list(report)[:3] == names
    # target_names alone decides the rows: 0 .. len - 1, even for classes never seen.
    wide = classification_report([0, 1], [0, 1], target_names=["a", "b", "c"], output_dict=True)
    assert wide["c"]["support"] == 0


def test_report_digits():
    text = classification_report(Y_TRUE, Y_PRED, digits=4)
    assert "   macro avg     0.3333    0.3889    0.3571         6" in text


@pytest.mark.parametrize("function", [accuracy, confusion_matrix, classification_report])
@pytest.mark.parametrize(
    ("y_true", "y_pred", "error", "message"),
    [
        ([[0, 1]], [0, 1], ValueError, r"y_true must be a 1-D .* got 2-D"),
        ([0, 1], 1, ValueError, r"y_pred must be a 1-D .* got 0-D"),
        ([], [], ValueError, "y_true must not be empty"),
        (
            [0.0, 1.0],
            [0, 1],
            TypeError,
            "y_true must hold integer class indices, got dtype float64",
        ),
        (
            [0, 1],
            [True, False],
            TypeError,
            "y_pred must hold integer class indices, got dtype bool",
        ),
        (
            [0, -1],
            [0, 1],
            ValueError,
            "y_true must hold non-negative class indices, got minimum -1",
        ),
        ([0, 1, 1], [0, 1], ValueError, "same length, got 3 and 2"),
    ],
)
def test_bad_labels(function, y_true, y_pred, error, message):
    with pytest.raises(error, match=message):
        function(y_true, y_pred)


@pytest.mark.parametrize("function", [confusion_matrix, classification_report])
@pytest.mark.parametrize(
    ("num_classes", "error", "message"),
    [
        (2, ValueError, "smaller than num_classes=2, got label 2"),
        (0, ValueError, "num_classes must be an integer >= 1, got 0"),
        (3.0, TypeError, "num_classes must be an integer, got float"),
        (True, TypeError, "num_classes must be an integer, got bool"),
    ],
)
def test_bad_num_classes(function, num_classes, error, message):
    with pytest.raises(error, match=message):
        function([0, 2], [1, 0], num_classes=num_classes)


def test_report_bad_settings():
    with pytest.raises(
        ValueError, match=r"target_names must have one name per class row \(3\), got 2"
    ):
        classification_report([0, 1], [1, 0], target_names=["a", "b"], num_classes=3)
    with pytest.raises(
        ValueError, match="target_names has 2 names, so labels must be smaller than 2, got label 2"
    ):
        classification_report([0, 2], [1, 0], target_names=["a", "b"])
    with pytest.raises(ValueError, match="digits must be a non-negative int, got -1"):
        classification_report([0, 1], [1, 0], digits=-1)
    with pytest.raises(TypeError, match="digits must be a non-negative int, got float"):
        classification_report([0, 1], [1, 0], digits=2.0)


@pytest.mark.parametrize("seed", range(5))
def test_matches_scikit_learn(seed):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    num_classes = 10
    y_true = rng.integers(0, num_classes, 500)
    # Mostly right, and class 7 never predicted, to exercise zero division too.
    y_pred = np.where(rng.random(500) < 0.7, y_true, rng.integers(0, num_classes, 500))
    y_pred[y_pred == 7] = 3
    np.testing.assert_array_equal(
        confusion_matrix(y_true, y_pred), sklearn_metrics.confusion_matrix(y_true, y_pred)
    )
    assert accuracy(y_true, y_pred) == pytest.approx(sklearn_metrics.accuracy_score(y_true, y_pred))
    for digits in (2, 4):
        assert classification_report(y_true, y_pred, digits=digits) == (
            sklearn_metrics.classification_report(y_true, y_pred, digits=digits, zero_division=0)
        )
    ours = classification_report(y_true, y_pred, output_dict=True)
    theirs = sklearn_metrics.classification_report(
        y_true, y_pred, output_dict=True, zero_division=0
    )
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key
