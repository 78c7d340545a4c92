"""``MLPClassifier``: fcnn as a scikit-learn estimator (Pipeline, GridSearchCV, cross_val_score).

It takes scikit-learn's ``MLPClassifier`` parameter names for what the two share,
so that swapping the import is enough for SGD-trained ReLU nets, and trains on
fcnn's fused C epoch. Needs scikit-learn (``pip install fcnn[sklearn]``);
``import fcnn`` does not import this module.
"""

from __future__ import annotations

import math
import numbers
import operator
import warnings
from dataclasses import replace
from typing import Any

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "fcnn.sklearn needs scikit-learn: pip install fcnn[sklearn] (or pip install scikit-learn)"
    ) from error

try:
    from sklearn.utils.validation import validate_data
except ImportError:  # scikit-learn < 1.6: the same check was a method

    def validate_data(estimator: Any, *args: Any, **kwargs: Any) -> Any:
        return estimator._validate_data(*args, **kwargs)


from ._checks import check_dropout_rate, check_int, check_real
from .augmentation import RECOMMENDED, Augmentation
from .dataloader import DataLoader
from .functional import Dropout, Linear
from .nn import Module
from .optim import SGD
from .training import BestWeights, TrainConfig, build_model, build_optimizer, train
from .training import predict_proba as _net_predict_proba

__all__ = ["MLPClassifier"]


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """A ReLU multi-layer perceptron trained by fcnn's SGD, as a scikit-learn classifier.

    The parameters shared with :class:`sklearn.neural_network.MLPClassifier` have
    its names and meanings (and defaults, except ``solver``); ``lr_decay``,
    ``lr_step``, ``dtype``, ``dropout``, ``augment`` and ``image_shape`` are
    fcnn's own. The net is ``Linear, ReLU`` (then ``Dropout`` when ``dropout`` >
    0) per hidden layer, then ``Linear, Softmax`` over the classes (also for two
    classes), initialised as fcnn does (Kaiming normal): the net ``fcnn train``
    builds, by :func:`fcnn.training.build_model`.

    Training goes through :func:`fcnn.train`, one epoch per call, on the fused C
    epoch: ``X`` is copied once into the net's dtype (float32 by default), or kept
    as it is when it is uint8.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(100,)
        Units of each hidden layer; ``()`` for none (softmax regression).
    activation : {"relu"}, default="relu"
        Only ReLU: accepted so that code written for scikit-learn runs unchanged.
    solver : {"sgd"}, default="sgd"
        Only SGD (with momentum and Nesterov); ``"adam"`` and ``"lbfgs"`` raise
        a ValueError.
    alpha : float, default=1e-4
        L2 penalty, as in scikit-learn. scikit-learn adds ``alpha / 2 * ||W||^2``
        to each batch's mean loss, which decays the weights by
        ``(1 - lr * alpha / batch_size)`` per step. fcnn's weight decay lambda
        decays weights *and biases* by ``(1 - lr * lambda)`` per step, so this
        estimator trains with ``lambda = alpha / batch_size``: the same pull on
        the weights, plus a (tiny) pull of the biases towards 0.
    batch_size : int or "auto", default="auto"
        Samples per step; ``"auto"`` is ``min(200, n_samples)``. Clipped to
        ``[1, n_samples]`` with a warning, as scikit-learn does.
    learning_rate_init : float, default=0.001
        The learning rate (of the first stage when ``lr_decay < 1``).
    max_iter : int, default=200
        Epochs at most (``fit``). ``partial_fit`` runs one epoch per call (and,
        as in scikit-learn, refuses ``early_stopping=True``).
    shuffle : bool, default=True
        Draw a new sample order every epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the shuffling, the validation split, the
        dropout masks and the augmentation's warps: a fixed value makes ``fit``
        reproducible.
    tol : float, default=1e-4
        An epoch improves when the training loss drops by more than ``tol`` (or,
        with ``early_stopping``, the validation accuracy rises by at least ``tol``).
    verbose : bool, default=False
        Print the loss (and validation score) of every epoch, as scikit-learn does.
    warm_start : bool, default=False
        ``fit`` continues from the previous solution instead of starting anew.
    momentum : float, default=0.9
        Momentum in [0, 1).
    nesterovs_momentum : bool, default=True
        Nesterov's momentum (ignored when ``momentum`` is 0).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified when
        every class can be on both sides, at random otherwise), stop
        when its accuracy has not improved by ``tol`` for ``n_iter_no_change``
        epochs, and keep the weights of the best epoch.
    validation_fraction : float, default=0.1
        Share of the training data held out with ``early_stopping``, in (0, 1).
    n_iter_no_change : int, default=10
        Epochs without improvement (see ``tol``) that end training.
    lr_decay : float, default=1.0
        fcnn's exponential schedule: the learning rate is multiplied by
        ``lr_decay`` every ``lr_step`` steps (staircase). 1.0 keeps it constant,
        as scikit-learn's ``learning_rate="constant"``.
    lr_step : int, default=1000
        Steps (batches) per stage of the schedule.
    dtype : {"float32", "float64"}, default="float32"
        Dtype of the weights and of the training copy of ``X``.
    dropout : float, default=0.0
        Inverted-dropout rate in [0, 1) on the output of every hidden layer's
        ReLU, as ``fcnn train --dropout``: while training, each unit is zeroed
        with this probability and the kept ones are scaled by ``1 / (1 - dropout)``;
        0 builds no Dropout layers. ``predict`` and ``predict_proba`` never drop.
        The masks are seeded from ``random_state``.
    augment : None, fcnn.Augmentation or "recommended", default=None
        Warp every training image at random, anew in every epoch, as
        ``fcnn train --augment`` does (see :class:`fcnn.Augmentation`);
        ``"recommended"`` is :data:`fcnn.augmentation.RECOMMENDED`, chosen for
        28 x 28 MNIST digits (weaken it for smaller images, e.g.
        ``Augmentation(translate=1)`` for 8 x 8 ones). The warp works on 8-bit
        pixels: ``X`` must be uint8, its rows images of ``image_shape``. The
        validation split of ``early_stopping`` and ``predict`` are never warped.
        The warps are seeded from ``random_state``.
    image_shape : tuple of (int, int) or None, default=None
        ``(height, width)`` of the images that ``X``'s rows flatten (row by row),
        for ``augment``; None means square images, ``sqrt(n_features)`` a side,
        and is a ValueError with ``augment`` when ``n_features`` is not a
        perfect square. When given, ``height * width`` must be ``n_features``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels (any type ``numpy.unique`` sorts).
    n_features_in_ : int
        Features seen by ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``X`` was a DataFrame with string column names.
    net_ : fcnn.nn.Module
        The trained net (``fcnn.save(clf.net_, ...)`` saves it; ``fcnn.predict``
        on it gives indices into ``classes_``).
    optimizer_ : fcnn.optim.SGD
        Its optimiser (momentum state, step count).
    coefs_ : list of ndarray
        Weights of each layer, shape (n_inputs, n_outputs), as scikit-learn's.
    intercepts_ : list of ndarray
        Biases of each layer.
    loss_ : float
        Mean cross-entropy over the last epoch (measured while training; without
        scikit-learn's penalty term).
    loss_curve_ : list of float
        ``loss_`` of every epoch.
    best_loss_ : float or None
        Lowest ``loss_`` (None with ``early_stopping``).
    validation_scores_ : list of float or None
        Validation accuracy of every epoch (``early_stopping`` only).
    best_validation_score_ : float or None
        Best of ``validation_scores_``.
    n_iter_ : int
        Epochs run.
    t_ : int
        Training samples seen.
    n_layers_ : int
        Layers, input and output included.
    n_outputs_ : int
        Output units (one per class).
    out_activation_ : str
        ``"softmax"``.

    Notes
    -----
    uint8 ``X`` is read as 8-bit pixels and scaled to [0, 1], as fcnn's
    :class:`~fcnn.dataloader.DataLoader` does (so MNIST trains from its 47 MB of
    bytes); every other dtype is used as its values. Pass uint8 to ``predict``
    too when you fitted on uint8.

    Examples
    --------
    >>> from fcnn.sklearn import MLPClassifier
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> clf = make_pipeline(StandardScaler(), MLPClassifier((64,), learning_rate_init=0.01))
    >>> clf.fit(X_train, y_train).score(X_test, y_test)
    """

    def __init__(
        self,
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        solver: str = "sgd",
        alpha: float = 0.0001,
        batch_size: int | str = "auto",
        learning_rate_init: float = 0.001,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        lr_decay: float = 1.0,
        lr_step: int = 1000,
        dtype: str = "float32",
        dropout: float = 0.0,
        augment: Augmentation | str | None = None,
        image_shape: tuple[int, int] | None = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.lr_decay = lr_decay
        self.lr_step = lr_step
        self.dtype = dtype
        self.dropout = dropout
        self.augment = augment
        self.image_shape = image_shape

    # ------------------------------------------------------------------ settings

    def _check_settings(self) -> tuple[tuple[int, ...], float, Augmentation | None]:
        """Validates every parameter (at fit time, as scikit-learn does); returns the hidden
        sizes, the dropout rate and the augmentation (None: off)."""

        # scikit-learn's convention: a bad parameter is a ValueError, whatever its type.
        def integer(name: str, minimum: int) -> int:
            try:
                return check_int(getattr(self, name), name, minimum=minimum)
            except TypeError as error:
                raise ValueError(str(error)) from None

        def real(name: str, low: float, high: float | None = None, **exclusive: bool) -> float:
            try:
                return check_real(getattr(self, name), name, minimum=low, maximum=high, **exclusive)
            except TypeError as error:
                raise ValueError(str(error)) from None

        if self.solver != "sgd":
            raise ValueError(
                f"solver must be 'sgd' (fcnn trains with SGD, with momentum and "
                f"Nesterov), got {self.solver!r}"
            )
        if self.activation != "relu":
            raise ValueError(
                f"activation must be 'relu' (fcnn's nets are ReLU nets), got {self.activation!r}"
            )
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = (sizes,)
        try:
            hidden = tuple(operator.index(size) for size in sizes)
        except TypeError:
            raise ValueError(
                f"hidden_layer_sizes must be an integer or a sequence of integers, "
                f"got {self.hidden_layer_sizes!r}"
            ) from None
        if any(size < 1 or isinstance(size, bool) for size in sizes):
            raise ValueError(
                f"hidden_layer_sizes must be >= 1 each, got {self.hidden_layer_sizes!r}"
            )
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            integer("batch_size", 1)
        real("alpha", 0)
        real("learning_rate_init", 0, exclusive_minimum=True)
        real("tol", 0)
        real("momentum", 0, 1, exclusive_maximum=True)
        real("validation_fraction", 0, 1, exclusive_minimum=True, exclusive_maximum=True)
        real("lr_decay", 0, 1, exclusive_minimum=True)
        integer("max_iter", 1)
        integer("n_iter_no_change", 1)
        integer("lr_step", 1)
        if self.dtype not in ("float32", "float64", np.float32, np.float64):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        try:
            dropout = check_dropout_rate(self.dropout, "dropout")
        except TypeError as error:
            raise ValueError(str(error)) from None
        return hidden, dropout, self._augmentation()

    def _augmentation(self) -> Augmentation | None:
        augment = self.augment
        if isinstance(augment, str) and augment == "recommended":
            return RECOMMENDED
        if augment is None or isinstance(augment, Augmentation):
            return augment
        raise ValueError(
            f"augment must be None, an fcnn.Augmentation or 'recommended', got {augment!r}"
        )

    def _image_shape(self, X: np.ndarray, given_dtype: object) -> tuple[int, int] | None:
        """(height, width) of the images in ``X``'s rows, checked against ``X``; None when
        neither ``augment`` nor ``image_shape`` asks for one. ``given_dtype``: ``X``'s dtype
        before scikit-learn's validation converted it, for the message."""
        num_features = X.shape[1]
        if self.image_shape is not None:
            shape = self.image_shape
            if (
                not isinstance(shape, (tuple, list))
                or len(shape) != 2
                or any(
                    isinstance(size, (bool, np.bool_))
                    or not hasattr(size, "__index__")
                    or operator.index(size) < 1
                    for size in shape
                )
            ):
                raise ValueError(
                    f"image_shape must be None or (height, width), two integers >= 1, got {shape!r}"
                )
            height, width = (operator.index(size) for size in shape)
            if height * width != num_features:
                raise ValueError(
                    f"image_shape {shape!r} holds {height * width} pixels, but X has "
                    f"{num_features} features"
                )
        elif self.augment is None:
            return None
        else:
            side = math.isqrt(num_features)
            if side * side != num_features:
                raise ValueError(
                    f"augment needs to know the images' height and width: X has "
                    f"{num_features} features, not a perfect square; pass "
                    f"image_shape=(height, width)"
                )
            height = width = side
        if self.augment is not None and X.dtype != np.uint8:
            raise ValueError(
                f"augment warps 8-bit pixels: X must be a uint8 array, got {given_dtype}"
            )
        return height, width

    def _batch_size(self, num_samples: int) -> int:
        if isinstance(self.batch_size, str):
            return min(200, num_samples)
        if not 1 <= self.batch_size <= num_samples:
            warnings.warn(
                "Got `batch_size` less than 1 or larger than sample size. It is "
                "going to be clipped",
                UserWarning,
                stacklevel=3,
            )
        return int(np.clip(self.batch_size, 1, num_samples))

    def _config(
        self,
        hidden: tuple[int, ...],
        batch_size: int,
        seed: int,
        dropout: float,
        augment: Augmentation | None,
    ) -> TrainConfig:
        """The fcnn settings these parameters mean (see ``alpha`` for the decay)."""
        return TrainConfig(
            hidden=hidden,
            lr=float(self.learning_rate_init),
            lr_decay=float(self.lr_decay),
            lr_step=int(self.lr_step),
            staircase=True,
            weight_decay=float(self.alpha) / batch_size,
            momentum=float(self.momentum),
            nesterov=bool(self.nesterovs_momentum) and self.momentum > 0,
            epochs=int(self.max_iter),
            batch_size=batch_size,
            seed=seed,
            dtype=np.dtype(self.dtype).name,
            init="kaiming",
            dropout=dropout,
            augment=augment,
        )

    def _input_dtypes(self) -> list[Any]:
        # uint8 stays bytes (the fused epoch scales it); anything else becomes the net's dtype.
        return [np.dtype(self.dtype), np.uint8]

    # ------------------------------------------------------------------ fitting

    def fit(self, X: Any, y: Any) -> MLPClassifier:
        """Trains on ``X`` (n_samples, n_features) and labels ``y`` (n_samples,).

        Returns
        -------
        self
        """
        return self._fit(X, y, classes=None, incremental=False)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> MLPClassifier:
        """One epoch over ``X``, ``y``, continuing from the current weights.

        Parameters
        ----------
        classes : array-like of shape (n_classes,)
            Every class, required on the first call (``y`` may miss some).

        Returns
        -------
        self
        """
        if not hasattr(self, "net_"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
        elif classes is not None and not np.array_equal(self.classes_, np.unique(classes)):
            raise ValueError(
                f"classes={classes!r} is not the same as on the first call to "
                f"partial_fit, {self.classes_!r}"
            )
        return self._fit(X, y, classes=classes, incremental=True)

    def _fit(self, X: Any, y: Any, classes: Any, incremental: bool) -> MLPClassifier:
        hidden, dropout, augment = self._check_settings()
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        reset = not ((incremental or self.warm_start) and hasattr(self, "net_"))
        given_dtype = getattr(X, "dtype", type(X).__name__)
        X, y = validate_data(self, X, y, reset=reset, dtype=self._input_dtypes())
        image_shape = self._image_shape(X, given_dtype)
        check_classification_targets(y)
        if reset:
            self.classes_ = np.unique(y if classes is None else classes)
            if self.classes_.shape[0] < 2:
                raise ValueError(
                    f"{type(self).__name__} needs samples of at least 2 classes; "
                    f"got 1 class: {self.classes_[0]!r}"
                )
        if self.classes_.dtype.kind != "O" and y.dtype.kind == "O":
            y = y.astype(self.classes_.dtype)
        known = np.isin(y, self.classes_)
        if not known.all():
            raise ValueError(
                f"y holds labels that are not in classes_ {self.classes_!r}: "
                f"{np.unique(y[~known])!r}"
            )
        targets = np.searchsorted(self.classes_, y).astype(np.int64)

        early_stopping = bool(self.early_stopping)
        val_data = None
        if reset:
            self._random_state = check_random_state(self.random_state)
        if early_stopping:
            X, X_val, targets, y_val = train_test_split(
                X,
                targets,
                test_size=self.validation_fraction,
                stratify=targets if _can_stratify(targets, self.validation_fraction) else None,
                random_state=self._random_state,
            )
            val_data = (X_val, y_val)
        batch_size = self._batch_size(X.shape[0])
        seed = int(self._random_state.randint(np.iinfo(np.int32).max))
        config = self._config(hidden, batch_size, seed, dropout, augment)
        if reset:
            self.net_: Module = build_model(X.shape[1], self.classes_.shape[0], config)
            self.optimizer_: SGD = build_optimizer(self.net_, config)
            self.n_outputs_ = int(self.classes_.shape[0])
            self.n_layers_ = len(hidden) + 2
            self.out_activation_ = "softmax"
            self.n_iter_ = 0
            self.t_ = 0
            self.loss_curve_: list[float] = []
            self._no_improvement_count = 0
            self.best_loss_: float | None = math.inf
            self.validation_scores_: list[float] | None = [] if early_stopping else None
            self.best_validation_score_: float | None = -math.inf if early_stopping else None
        else:
            # Settings may have changed since (set_params, then warm_start or partial_fit).
            self.optimizer_.weight_decay = float(self.alpha) / batch_size
            self._set_dropout(config)
        if early_stopping and self.validation_scores_ is None:
            self.validation_scores_, self.best_validation_score_ = [], -math.inf
        if image_shape is not None:
            X = X.reshape(-1, *image_shape)
        loader = DataLoader(
            (X, targets),
            batch_size=batch_size,
            shuffle=bool(self.shuffle),
            seed=seed,  # and the warps' seed
            dtype=self.net_.dtype,
            augment=augment,
        )
        best = BestWeights()
        epochs = 1 if incremental else int(self.max_iter)
        for _ in range(epochs):
            history = train(
                self.net_, self.optimizer_, loader, 1, val_data=val_data, progress=False
            )
            if not history["epoch"]:  # Ctrl-C within the epoch
                warnings.warn("Training interrupted by user.", stacklevel=3)
                break
            self.n_iter_ += 1
            self.t_ += X.shape[0]
            self.loss_ = float(history["train_loss"][0])
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
            if early_stopping:
                score = float(history["val_accuracy"][0])
                self.validation_scores_.append(score)
                if self.verbose:
                    print(f"Validation score: {score:f}")
                best.offer(self.n_iter_, score, self.net_, self.optimizer_)
            if incremental:
                self.best_loss_ = min(self.best_loss_ or math.inf, self.loss_)
                break
            if self._no_progress(early_stopping):
                if self.verbose:
                    what = "Validation score" if early_stopping else "Training loss"
                    print(
                        f"{what} did not improve more than tol={self.tol:f} for "
                        f"{self.n_iter_no_change} consecutive epochs. Stopping."
                    )
                break
            if history.get("interrupted"):
                warnings.warn("Training interrupted by user.", stacklevel=3)
                break
        else:
            if not incremental:
                warnings.warn(
                    f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                    f"reached and the optimization hasn't converged yet.",
                    ConvergenceWarning,
                    stacklevel=3,
                )
        if early_stopping:
            self.best_loss_ = None
            if best.epoch is not None:
                best.restore(self.net_, self.optimizer_)
        # fcnn.train trains in training mode whatever the mode: left in evaluation mode,
        # net_(x) on the fitted net does not drop units either.
        self.net_.eval()
        return self

    def _set_dropout(self, config: TrainConfig) -> None:
        """Gives the net that training continues from (warm_start, partial_fit) the current
        ``dropout``: a new rate goes into its Dropout layers; when Dropout layers must come
        or go, its Linear layers move into the net ``build_model`` makes for ``config``,
        taking their momentum velocities along."""
        net = self.net_
        dropouts = [layer for layer in net.layers if isinstance(layer, Dropout)]
        if dropouts and config.dropout > 0:
            for layer in dropouts:
                layer.p = config.dropout
            return
        if not dropouts and config.dropout == 0:
            return
        old_index = [i for i, layer in enumerate(net.layers) if isinstance(layer, Linear)]
        linears = [net.layers[i] for i in old_index]
        # The net's own sizes: hidden_layer_sizes may have changed since, to no effect.
        hidden = tuple(layer.num_outputs for layer in linears[:-1])
        layers = build_model(
            linears[0].num_inputs, linears[-1].num_outputs, replace(config, hidden=hidden)
        ).layers
        new_index = [i for i, layer in enumerate(layers) if isinstance(layer, Linear)]
        velocities = self.optimizer_.velocities  # keyed "layers.<index>.<name>"
        moved = {}
        for old, new, linear in zip(old_index, new_index, linears, strict=True):
            layers[new] = linear
            for name in linear.parameters():
                if f"layers.{old}.{name}" in velocities:
                    moved[f"layers.{new}.{name}"] = velocities[f"layers.{old}.{name}"]
        velocities.clear()
        velocities.update(moved)
        net.layers = layers  # the same Module, which the optimiser steps

    def _no_progress(self, early_stopping: bool) -> bool:
        """scikit-learn's rule: more than ``n_iter_no_change`` epochs without a ``tol`` gain."""
        if early_stopping:
            score = self.validation_scores_[-1]
            worse = score < self.best_validation_score_ + self.tol
            self.best_validation_score_ = max(self.best_validation_score_, score)
        else:
            worse = self.loss_curve_[-1] > self.best_loss_ - self.tol
            self.best_loss_ = min(self.best_loss_, self.loss_curve_[-1])
        self._no_improvement_count = self._no_improvement_count + 1 if worse else 0
        return self._no_improvement_count > self.n_iter_no_change

    # ------------------------------------------------------------------ predicting

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (n_samples, n_classes), columns in the order of ``classes_``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=self._input_dtypes())
        return _net_predict_proba(self.net_, X)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """``log(predict_proba(X))``."""
        probs = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(probs, out=probs)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each sample (n_samples,), from ``classes_``."""
        probs = self.predict_proba(X)  # first: it raises NotFittedError before fit
        return self.classes_[np.argmax(probs, axis=1)]

    @property
    def coefs_(self) -> list[np.ndarray]:
        """Weights of each layer, (n_inputs, n_outputs): the net's own arrays, not copies."""
        check_is_fitted(self)
        return [layer.weight for layer in self.net_.linear_layers()]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """Biases of each layer (the net's own arrays)."""
        check_is_fitted(self)
        return [layer.bias for layer in self.net_.linear_layers()]


def _can_stratify(targets: np.ndarray, fraction: float) -> bool:
    """Whether a stratified split is possible: every class twice, each side >= one per class."""
    counts = np.bincount(targets)
    counts = counts[counts > 0]
    held_out = math.ceil(fraction * targets.shape[0])
    return bool(
        counts.min() >= 2
        and held_out >= counts.shape[0]
        and targets.shape[0] - held_out >= counts.shape[0]
    )
