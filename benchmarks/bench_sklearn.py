"""fcnn.sklearn.MLPClassifier against scikit-learn's MLPClassifier: test accuracy and fit time.

Both estimators get the same settings (scikit-learn's parameter names): one ReLU hidden
layer, SGD with Nesterov momentum 0.9, the same learning rate, batch size and alpha, and
exactly --epochs epochs (tol=0 and n_iter_no_change above the epochs, so neither stops
early). Data: MNIST (60,000 training images, the 10,000 test images) and scikit-learn's
load_digits (1,797 8x8 images; 75% train, 25% test, stratified, seed 0).

Contenders, per data set:
  fcnn, uint8 X       fcnn.sklearn.MLPClassifier on the raw bytes (MNIST only; scaled
                      by 1/255 inside the fused epoch)
  fcnn, float32 X     fcnn.sklearn.MLPClassifier on X / 255 (or X / 16) as float32
  scikit-learn        sklearn.neural_network.MLPClassifier(solver="sgd") on the same
                      float32 X (it keeps float32)

Fit time is the median of --repeats fits (each from its own random_state=0 start);
accuracy is that of the last fit. Initial weights differ (fcnn: Kaiming normal;
scikit-learn: Glorot uniform), so accuracies differ a little by design.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_sklearn.py --quick
    python benchmarks/bench_sklearn.py                 # MNIST 10 epochs, digits 50, 3 repeats
    python benchmarks/bench_sklearn.py --threads 1 --repeats 1
"""

from __future__ import annotations

import statistics
import time
import warnings

import common
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SklearnMLP

from fcnn.sklearn import MLPClassifier as FcnnMLP

QUICK_SAMPLES = 5000


def settings(hidden: int, epochs: int, batch_size: int, lr: float) -> dict:
    """The parameters both estimators take, with the same meaning."""
    return dict(
        hidden_layer_sizes=(hidden,),
        solver="sgd",
        learning_rate_init=lr,
        batch_size=batch_size,
        momentum=0.9,
        nesterovs_momentum=True,
        alpha=1e-4,
        max_iter=epochs,
        tol=0.0,
        n_iter_no_change=epochs + 1,
        shuffle=True,
        random_state=0,
    )


def time_fits(make, X_train, y_train, X_test, y_test, repeats: int) -> dict:
    seconds = []
    for _ in range(repeats):
        estimator = make()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            started = time.perf_counter()
            estimator.fit(X_train, y_train)
            seconds.append(time.perf_counter() - started)
    return {
        "seconds": statistics.median(seconds),
        "all_seconds": seconds,
        "epochs": int(estimator.n_iter_),
        "accuracy": float(estimator.score(X_test, y_test)),
    }


def main() -> None:
    parser = common.make_parser(__doc__, uses_torch=False)
    parser.add_argument(
        "--epochs",
        type=common.positive_int,
        default=None,
        help="MNIST epochs (default 10; 2 with --quick)",
    )
    parser.add_argument("--digits-epochs", type=common.positive_int, default=50)
    parser.add_argument(
        "--hidden",
        type=common.positive_int,
        default=256,
        help="hidden units on MNIST (digits: 100)",
    )
    parser.add_argument("--batch-size", type=common.positive_int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--no-mnist", action="store_true", help="digits only")
    args = common.parse_args(parser)
    if args.epochs is None:
        args.epochs = 2 if args.quick else 10
    threads = common.set_threads(args.threads)

    cases = []  # (data set, contender, make, X_train, y_train, X_test, y_test)
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        (X / 16).astype(np.float32), y, test_size=0.25, stratify=y, random_state=0
    )
    digits = settings(100, args.digits_epochs, 32, args.lr)
    cases.append(
        ("digits", "fcnn, float32 X", lambda: FcnnMLP(**digits), X_train, y_train, X_test, y_test)
    )
    cases.append(
        ("digits", "scikit-learn", lambda: SklearnMLP(**digits), X_train, y_train, X_test, y_test)
    )
    if not args.no_mnist:
        data = common.load_data(args)
        count = QUICK_SAMPLES if args.quick else len(data.train_images)
        train_bytes, train_labels = data.train_images[:count], data.train_labels[:count]
        train_floats = train_bytes.astype(np.float32) / 255
        test_floats = data.test_images.astype(np.float32) / 255
        mnist = settings(args.hidden, args.epochs, args.batch_size, args.lr)
        cases.append(
            (
                "MNIST",
                "fcnn, uint8 X",
                lambda: FcnnMLP(**mnist),
                train_bytes,
                train_labels,
                data.test_images,
                data.test_labels,
            )
        )
        cases.append(
            (
                "MNIST",
                "fcnn, float32 X",
                lambda: FcnnMLP(**mnist),
                train_floats,
                train_labels,
                test_floats,
                data.test_labels,
            )
        )
        cases.append(
            (
                "MNIST",
                "scikit-learn",
                lambda: SklearnMLP(**mnist),
                train_floats,
                train_labels,
                test_floats,
                data.test_labels,
            )
        )

    results = []
    for dataset, contender, make, *arrays in cases:
        result = time_fits(make, *arrays, repeats=args.repeats)
        results.append(
            {
                "dataset": dataset,
                "contender": contender,
                "train_samples": int(arrays[0].shape[0]),
                **result,
            }
        )
        print(
            f"{dataset:6s} {contender:16s} {result['seconds']:8.2f} s  {result['accuracy']:.2%}",
            flush=True,
        )

    rows = []
    for result in results:
        reference = next(
            r
            for r in results
            if r["dataset"] == result["dataset"] and r["contender"] == "scikit-learn"
        )
        rows.append(
            [
                f"{result['dataset']}: {result['contender']}",
                result["train_samples"],
                result["epochs"],
                f"{result['seconds']:.2f}",
                f"{reference['seconds'] / result['seconds']:.1f}x",
                f"{result['accuracy']:.2%}",
            ]
        )
    title = (
        f"fit time (median of {args.repeats}) and test accuracy, {threads} thread(s); "
        f"MNIST 784-{args.hidden}-10, digits 64-100-10; SGD lr {args.lr}, Nesterov 0.9"
        f"{' [QUICK: not a result]' if args.quick else ''}"
    )
    common.print_table(
        title, ["data set: estimator", "train", "epochs", "fit s", "vs sklearn", "accuracy"], rows
    )
    common.write_results(args, "sklearn", threads, {"results": results})


if __name__ == "__main__":
    main()
