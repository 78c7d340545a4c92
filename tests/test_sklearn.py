"""fcnn.sklearn.MLPClassifier: scikit-learn's own estimator checks, its parameter names and
stopping rules, any labels and feature counts, uint8 pixels, the fused path, dropout and
augmentation, Pipeline, GridSearchCV(n_jobs=2); and ``import fcnn`` never importing
scikit-learn."""

import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip(
    "sklearn", reason="scikit-learn is not installed (pip install fcnn[sklearn])"
)

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier as SklearnMLP  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402
from synthetic import blobs  # noqa: E402

import fcnn.training  # noqa: E402
from fcnn import Augmentation, Dropout  # noqa: E402
from fcnn.augmentation import RECOMMENDED  # noqa: E402
from fcnn.sklearn import MLPClassifier  # noqa: E402

# Short fits stop at max_iter on purpose; scikit-learn's checks use batches above n_samples.
pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    pytest.mark.filterwarnings("ignore:Got `batch_size`:UserWarning"),
]

SHARED = (
    "hidden_layer_sizes",
    "activation",
    "solver",
    "alpha",
    "batch_size",
    "learning_rate_init",
    "max_iter",
    "shuffle",
    "random_state",
    "tol",
    "verbose",
    "warm_start",
    "momentum",
    "nesterovs_momentum",
    "early_stopping",
    "validation_fraction",
    "n_iter_no_change",
)


@parametrize_with_checks(
    [
        MLPClassifier(),
        MLPClassifier(
            (8, 4),
            dtype="float64",
            batch_size=16,
            learning_rate_init=0.01,
            lr_decay=0.9,
            lr_step=100,
        ),
        # augment is not among them: it needs uint8 images, and the checks fit floats.
        MLPClassifier((8,), dropout=0.3, batch_size=16, learning_rate_init=0.01),
    ]
)
def test_scikit_learn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def test_import_fcnn_does_not_import_scikit_learn(tmp_path):
    code = "import sys, fcnn; print('sklearn' in sys.modules)"
    # cwd: `python -c` puts the working directory first on sys.path, and a source
    # checkout's fcnn has no built _core.
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "False"


def test_parameters_are_scikit_learns_with_its_defaults():
    ours, theirs = MLPClassifier().get_params(), SklearnMLP().get_params()
    for name in SHARED:
        assert name in ours, name
        if name != "solver":
            assert ours[name] == theirs[name], name
    assert ours["solver"] == "sgd"
    assert {"lr_decay", "lr_step", "dtype"} <= ours.keys()
    assert (ours["dropout"], ours["augment"], ours["image_shape"]) == (0.0, None, None)
    clf = MLPClassifier().set_params(hidden_layer_sizes=(7,), alpha=0.5)
    assert clone(clf).get_params()["hidden_layer_sizes"] == (7,)
    warp = Augmentation(translate=1.0)
    clf = MLPClassifier(dropout=0.25, augment=warp, image_shape=(2, 8))
    assert clone(clf).get_params()["augment"] == warp
    assert clone(clf).get_params()["dropout"] == 0.25
    assert clone(clf).get_params()["image_shape"] == (2, 8)


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"solver": "adam"}, r"solver must be 'sgd' \(fcnn trains with SGD"),
        ({"activation": "tanh"}, r"activation must be 'relu'"),
        ({"hidden_layer_sizes": (4, 0)}, r"hidden_layer_sizes must be >= 1 each"),
        ({"hidden_layer_sizes": "big"}, r"hidden_layer_sizes must be an integer or a sequence"),
        ({"momentum": 1.0}, r"momentum must be finite and >= 0 and < 1, got 1.0"),
        ({"learning_rate_init": 0}, r"learning_rate_init must be finite and > 0, got 0"),
        ({"alpha": float("inf")}, r"alpha must be finite and >= 0, got inf"),
        ({"max_iter": True}, r"max_iter must be an integer, got bool"),
        ({"max_iter": 0}, r"max_iter must be an integer >= 1, got 0"),
        ({"tol": "small"}, r"tol must be a real number, got str"),
        ({"batch_size": 0}, r"batch_size must be an integer >= 1"),
        ({"validation_fraction": 1.0}, r"validation_fraction must be finite and > 0 and < 1"),
        ({"lr_decay": 0}, r"lr_decay must be finite and > 0 and <= 1, got 0"),
        ({"dtype": "float16"}, r"dtype must be 'float32' or 'float64'"),
        ({"dropout": -0.1}, r"dropout must be in \[0, 1\), got -0.1"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
        ({"dropout": "x"}, r"dropout must be a real number, got str"),
        ({"augment": "nonsense"}, r"augment must be None, an fcnn.Augmentation or 'recommended'"),
        ({"augment": {"translate": 1}}, r"augment must be None, an fcnn.Augmentation"),
        ({"image_shape": 16}, r"image_shape must be None or \(height, width\)"),
        ({"image_shape": (4, 0)}, r"image_shape must be None or \(height, width\)"),
        ({"image_shape": (True, 16)}, r"image_shape must be None or \(height, width\)"),
        ({"image_shape": (2, 2, 4)}, r"image_shape must be None or \(height, width\)"),
        ({"image_shape": (4, 5)}, r"image_shape \(4, 5\) holds 20 pixels, but X has 16 features"),
    ],
)
def test_bad_settings_are_refused_at_fit_naming_the_setting(setting, message):
    images, labels = blobs(n=60)
    clf = MLPClassifier(**setting)  # the constructor only stores, as scikit-learn requires
    with pytest.raises(ValueError, match=message):
        clf.fit(images, labels)


def test_any_label_type_and_feature_count():
    images, labels = blobs(n=300, features=5)
    names = np.array(["cat", "dog", "emu"], dtype=object)[labels]
    clf = MLPClassifier((16,), learning_rate_init=0.1, max_iter=30, random_state=0)
    clf.fit(images.astype(np.float64) / 255, names)
    assert list(clf.classes_) == ["cat", "dog", "emu"] and clf.n_features_in_ == 5
    predicted = clf.predict(images.astype(np.float64) / 255)
    assert predicted.dtype == object and set(predicted) <= {"cat", "dog", "emu"}
    assert clf.score(images.astype(np.float64) / 255, names) > 0.9
    proba = clf.predict_proba(images[:4].astype(np.float64) / 255)
    assert proba.shape == (4, 3)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], predicted[:4])
    assert [w.shape for w in clf.coefs_] == [(5, 16), (16, 3)]
    assert [b.shape for b in clf.intercepts_] == [(16,), (3,)]
    assert clf.n_layers_ == 3 and clf.n_outputs_ == 3 and clf.out_activation_ == "softmax"
    floats = MLPClassifier((4,), max_iter=5, random_state=0).fit(
        images / 255.0, np.array([-1.0, 2.0, 7.0])[labels]
    )
    np.testing.assert_array_equal(floats.classes_, [-1.0, 2.0, 7.0])


def test_uint8_images_are_pixels_and_train_on_the_fused_path(monkeypatch):
    real, calls = fcnn.training._core, []

    class CountingCore:
        def train_epoch(self, *args):
            calls.append(args[0].dtype)
            return real.train_epoch(*args)

    monkeypatch.setattr(fcnn.training, "_core", CountingCore())
    images, labels = blobs(n=300)
    settings = dict(
        hidden_layer_sizes=(8,),
        learning_rate_init=0.05,
        max_iter=5,
        tol=0,
        random_state=3,
        dtype="float64",
    )
    from_bytes = MLPClassifier(**settings).fit(images, labels)
    assert calls and set(calls) == {np.dtype(np.uint8)} and len(calls) == from_bytes.n_iter_
    calls.clear()
    from_floats = MLPClassifier(**settings).fit(images / 255.0, labels)
    assert set(calls) == {np.dtype(np.float64)}  # already the net's dtype: fused too
    for a, b in zip(from_bytes.coefs_, from_floats.coefs_, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(from_bytes.predict(images), from_floats.predict(images / 255))


def test_alpha_means_what_it_means_in_scikit_learn():
    images, labels = blobs(n=100)
    clf = MLPClassifier((4,), alpha=0.5, batch_size=20, max_iter=1).fit(images, labels)
    assert clf.optimizer_.weight_decay == pytest.approx(0.5 / 20)
    with pytest.warns(UserWarning, match="batch_size"):
        clipped = MLPClassifier((4,), batch_size=1000, max_iter=1).fit(images, labels)
    assert clipped.optimizer_.weight_decay == pytest.approx(1e-4 / 100)


def test_stopping_on_the_training_loss_follows_scikit_learns_rule():
    images, labels = blobs(n=200)
    x = images / 255.0
    settings = dict(
        hidden_layer_sizes=(8,),
        solver="sgd",
        tol=10.0,
        n_iter_no_change=3,
        max_iter=50,
        random_state=0,
    )
    ours, theirs = MLPClassifier(**settings).fit(x, labels), SklearnMLP(**settings).fit(x, labels)
    # The first epoch sets the best loss; no later one gains 10: the 3 + 1st of those stops.
    assert ours.n_iter_ == theirs.n_iter_ == 5
    assert len(ours.loss_curve_) == 5 and ours.best_loss_ == min(ours.loss_curve_)
    assert ours.t_ == 5 * 200
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(2\) reached"):
        MLPClassifier((8,), max_iter=2).fit(x, labels)


def test_early_stopping_keeps_the_best_validation_epoch():
    images, labels = blobs(n=400)
    clf = MLPClassifier(
        (8,),
        learning_rate_init=0.3,
        early_stopping=True,
        n_iter_no_change=2,
        max_iter=100,
        random_state=0,
    ).fit(images, labels)
    assert clf.best_loss_ is None and len(clf.validation_scores_) == clf.n_iter_ < 100
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    best_epoch = 1 + int(np.argmax(clf.validation_scores_))
    assert clf.optimizer_.step_count == best_epoch * -(-360 // 200)  # restored to it
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        clf.partial_fit(images, labels)


def test_partial_fit_needs_classes_first_then_runs_one_epoch_each():
    images, labels = blobs(n=300)
    clf = MLPClassifier((8,), learning_rate_init=0.1, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(images, labels)
    clf.partial_fit(images[labels < 2], labels[labels < 2], classes=[0, 1, 2])
    assert list(clf.classes_) == [0, 1, 2] and clf.n_iter_ == 1
    for _ in range(5):
        clf.partial_fit(images, labels)
    assert clf.n_iter_ == 6 and clf.t_ == (labels < 2).sum() + 5 * 300
    assert clf.score(images, labels) > 0.9
    with pytest.raises(ValueError, match=r"y holds labels that are not in classes_"):
        clf.partial_fit(images, labels + 1)
    with pytest.raises(ValueError, match=r"is not the same as on the first call"):
        clf.partial_fit(images, labels, classes=[0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"X has 15 features, but MLPClassifier is expecting 16"):
        clf.partial_fit(images[:, :15], labels)


def test_warm_start_continues_and_verbose_prints_like_scikit_learn(capsys):
    images, labels = blobs(n=200)
    clf = MLPClassifier(
        (8,), max_iter=3, tol=0, warm_start=True, verbose=True, early_stopping=True, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(images, labels)
        first = [w.copy() for w in clf.coefs_]
        clf.fit(images, labels)
    assert clf.n_iter_ == 6 and len(clf.loss_curve_) == 6
    assert any((a != b).any() for a, b in zip(first, clf.coefs_, strict=True))
    out = capsys.readouterr().out
    assert "Iteration 1, loss = " in out and "Iteration 6, loss = " in out
    assert "Validation score: " in out


def test_unfitted_is_an_error():
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(np.zeros((1, 4)))
    assert not hasattr(MLPClassifier(), "coefs_")


def test_pipeline_and_cross_val_score_on_digits():
    X, y = load_digits(return_X_y=True)
    pipeline = make_pipeline(
        StandardScaler(), MLPClassifier((32,), learning_rate_init=0.05, max_iter=20, random_state=0)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(pipeline, X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.85


@pytest.mark.slow
def test_grid_search_with_two_processes():
    X, y = load_digits(return_X_y=True)
    search = GridSearchCV(
        MLPClassifier(max_iter=10, random_state=0),
        {"hidden_layer_sizes": [(16,), (32,)], "learning_rate_init": [0.001, 0.1]},
        cv=2,
        n_jobs=2,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X / 16, y)
    assert search.best_params_["learning_rate_init"] == 0.1  # 10 epochs at 0.001 learn little
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.score(X / 16, y) > 0.9


# ---------------------------------------------------------------------------- dropout, augment


def _fit(images, labels, **settings):
    settings = {"hidden_layer_sizes": (8,), "learning_rate_init": 0.05, "max_iter": 3, **settings}
    return MLPClassifier(**settings).fit(images, labels)


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.coefs_, b.coefs_, strict=True))


def test_dropout_builds_the_net_fcnn_train_builds():
    images, labels = blobs(n=100)
    clf = _fit(images, labels, hidden_layer_sizes=(8, 4), dropout=0.5, random_state=0)
    kinds = [type(layer).__name__ for layer in clf.net_.layers]
    assert kinds == ["Linear", "ReLU", "Dropout"] * 2 + ["Linear", "Softmax"]
    assert {layer.p for layer in clf.net_.layers if isinstance(layer, Dropout)} == {0.5}
    assert clf.n_layers_ == 4 and [w.shape for w in clf.coefs_] == [(16, 8), (8, 4), (4, 3)]
    plain = _fit(images, labels, hidden_layer_sizes=(8, 4), random_state=0)
    assert not any(isinstance(layer, Dropout) for layer in plain.net_.layers)


@pytest.mark.parametrize(
    "change",
    [{"dropout": 0.5}, {"augment": Augmentation(translate=1)}, {"augment": "recommended"}],
)
def test_dropout_and_augment_change_the_trained_weights(change):
    images, labels = blobs(n=100)
    plain = _fit(images, labels, random_state=0)
    changed = _fit(images, labels, random_state=0, **change)
    # The same starting weights (build_model draws them before any Dropout): only training differs.
    assert not _same(plain, changed)


def test_recommended_means_fcnn_train_augments_strengths():
    images, labels = blobs(n=100)
    by_name = _fit(images, labels, augment="recommended", random_state=0)
    assert _same(by_name, _fit(images, labels, augment=RECOMMENDED, random_state=0))


def test_fit_is_reproducible_from_random_state():
    images, labels = blobs(n=100)
    settings = {"dropout": 0.3, "augment": Augmentation(translate=1, rotate=10)}
    first = _fit(images, labels, random_state=1, **settings)
    again = _fit(images, labels, random_state=1, **settings)
    assert _same(first, again) and first.loss_curve_ == again.loss_curve_
    other = _fit(images, labels, random_state=2, **settings)
    assert not _same(first, other)


def test_dropout_and_augment_train_on_the_fused_path(monkeypatch):
    real, calls = fcnn.training._core, []

    class CountingCore:
        def train_epoch(self, *args, **kwargs):
            calls.append((args[-1], kwargs))
            return real.train_epoch(*args, **kwargs)

    monkeypatch.setattr(fcnn.training, "_core", CountingCore())
    images, labels = blobs(n=100)
    _fit(images, labels, dropout=0.5, augment=Augmentation(translate=1), random_state=0)
    assert len(calls) == 3
    dropouts, keywords = calls[0]
    assert [p for p, _, _ in dropouts] == [0.5]
    assert keywords["image_shape"] == (4, 4) and keywords["augment"][0] == 1.0


def test_prediction_neither_drops_nor_warps():
    images, labels = blobs(n=100)
    clf = _fit(images, labels, dropout=0.5, augment="recommended", random_state=0)
    first = clf.predict_proba(images)
    np.testing.assert_array_equal(first, clf.predict_proba(images))
    assert not clf.net_.training  # net_(x) does not drop units either
    np.testing.assert_allclose(clf.net_(images / np.float32(255)), first, rtol=1e-5, atol=1e-7)


def test_early_stopping_splits_before_the_warp():
    images, labels = blobs(n=100)
    settings = {"augment": Augmentation(translate=1), "early_stopping": True, "max_iter": 3}
    clf = _fit(images, labels, random_state=0, **settings)
    assert len(clf.validation_scores_) == clf.n_iter_ == 3
    assert _same(clf, _fit(images, labels, random_state=0, **settings))


def test_augment_needs_uint8_images_of_a_known_shape():
    images, labels = blobs(n=60, features=10)
    with pytest.raises(ValueError, match=r"augment needs .* 10 features, not a perfect square"):
        _fit(images, labels, augment="recommended")
    with pytest.raises(ValueError, match=r"augment warps 8-bit pixels: X must be a uint8 array"):
        _fit(images / 255.0, labels, augment="recommended", image_shape=(2, 5))
    with pytest.raises(ValueError, match=r"X must be a uint8 array, got int64"):
        _fit(images.astype(np.int64), labels, augment="recommended", image_shape=(2, 5))
    # Floats are fine without augment, image_shape or no image_shape.
    _fit(images / 255.0, labels, image_shape=(2, 5))
    # Rows are images of image_shape, row by row: the two readings warp differently.
    wide = _fit(images, labels, augment=Augmentation(translate=1), image_shape=(2, 5))
    tall = _fit(images, labels, augment=Augmentation(translate=1), image_shape=(5, 2))
    assert not _same(wide, tall)


def test_warm_start_and_partial_fit_keep_dropout_and_augment():
    images, labels = blobs(n=200)
    clf = MLPClassifier(
        (8,),
        learning_rate_init=0.05,
        max_iter=2,
        warm_start=True,
        dropout=0.2,
        augment=Augmentation(translate=1),
        random_state=0,
    )
    clf.fit(images, labels).fit(images, labels)
    assert clf.n_iter_ == 4
    linears = clf.net_.linear_layers()
    assert sorted(clf.optimizer_.velocities) == [
        "layers.0.bias",
        "layers.0.weight",
        "layers.3.bias",
        "layers.3.weight",
    ]

    clf.set_params(dropout=0.4).fit(images, labels)
    assert [layer.p for layer in clf.net_.layers if isinstance(layer, Dropout)] == [0.4]

    # Dropout layers go: the same Linear layers, and their momentum, go on training.
    clf.set_params(dropout=0.0, max_iter=1)
    momentum = clf.optimizer_.velocities["layers.3.weight"]
    clf.partial_fit(images, labels)
    assert [type(layer).__name__ for layer in clf.net_.layers] == [
        "Linear",
        "ReLU",
        "Linear",
        "Softmax",
    ]
    assert all(a is b for a, b in zip(clf.net_.linear_layers(), linears, strict=True))
    assert sorted(clf.optimizer_.velocities) == [
        "layers.0.bias",
        "layers.0.weight",
        "layers.2.bias",
        "layers.2.weight",
    ]
    assert clf.optimizer_.velocities["layers.2.weight"] is momentum and momentum.any()

    # ... and come back.
    clf.set_params(dropout=0.1).partial_fit(images, labels)
    assert [type(layer).__name__ for layer in clf.net_.layers][2] == "Dropout"
    assert clf.optimizer_.velocities["layers.3.weight"] is momentum
    assert clf.n_iter_ == 8 and clf.optimizer_.step_count == 8  # one batch of 200 an epoch
    assert np.isfinite(clf.loss_curve_).all()


def test_augmented_digits_are_learned():
    X, y = load_digits(return_X_y=True)
    pixels = (X * 16).clip(0, 255).astype(np.uint8)  # digits' 0..16 as 8-bit pixels
    train_X, test_X, train_y, test_y = train_test_split(
        pixels, y, test_size=0.25, random_state=0, stratify=y
    )
    clf = MLPClassifier(
        (64,),
        learning_rate_init=0.05,
        lr_decay=0.5,
        lr_step=500,
        batch_size=32,
        max_iter=40,
        tol=0,
        augment=Augmentation(translate=1),
        random_state=0,
    ).fit(train_X, train_y)
    assert clf.score(test_X, test_y) > 0.93
