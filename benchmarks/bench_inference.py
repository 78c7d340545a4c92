"""Time predicting the 10,000 MNIST test images with a trained 784-1024-10 net.

Contenders, all float32 on the same weights, in batches of --batch-size images
(fcnn's evaluation batch, 1,000, by default), from the uint8 images (the
conversion to [0, 1] is part of the work):

- ``fcnn.predict(net, test_images)``;
- a plain NumPy forward pass, one ``@`` per product, then argmax;
- PyTorch on the CPU under ``torch.no_grad()`` (when installed).

The net is first trained for one fused epoch (on the first --train-samples
images) so that the predictions mean something; the table shows how often each
contender agrees with fcnn.predict. Each repeat times --number calls in a row
and keeps their mean; the median over --repeats (contenders interleaved within a
repeat) is reported, in milliseconds per 10,000 images and microseconds per
image. Writes benchmarks/results/inference.json.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_inference.py --quick
    python benchmarks/bench_inference.py
"""

from __future__ import annotations

import time

import common
import numpy as np

import fcnn
from fcnn.dataloader import DataLoader
from fcnn.optim import SGD
from fcnn.training import EVAL_BATCH_SIZE

QUICK_TRAIN_SAMPLES = 2048
QUICK_TEST_SAMPLES = 2000


def timed(predict, number: int) -> common.Run:
    """Mean seconds of ``number`` calls of ``predict()``, with the last predictions."""
    started = time.perf_counter()
    for _ in range(number):
        predictions = predict()
    return common.Run(
        (time.perf_counter() - started) / number, extra={"predictions": np.asarray(predictions)}
    )


def torch_predictor(params, images: np.ndarray, batch_size: int):
    torch = common.torch
    w1, b1, w2, b2 = (torch.from_numpy(np.ascontiguousarray(param)) for param in params)
    model = torch.nn.Sequential(
        torch.nn.Linear(w1.shape[0], w1.shape[1]),
        torch.nn.ReLU(),
        torch.nn.Linear(w2.shape[0], w2.shape[1]),
    )
    with torch.no_grad():
        for layer, weight, bias in ((model[0], w1, b1), (model[2], w2, b2)):
            layer.weight.copy_(weight.T)
            layer.bias.copy_(bias)
    model.eval()
    image_tensor = torch.from_numpy(images)

    def predict():
        with torch.no_grad():
            return torch.cat(
                [
                    model(
                        image_tensor[start : start + batch_size].to(torch.float32).div_(255)
                    ).argmax(dim=1)
                    for start in range(0, len(images), batch_size)
                ]
            ).numpy()

    return predict


def main() -> None:
    parser = common.make_parser(__doc__)
    parser.add_argument("--hidden", type=common.positive_int, default=1024)
    parser.add_argument("--batch-size", type=common.positive_int, default=EVAL_BATCH_SIZE)
    parser.add_argument(
        "--number",
        type=common.positive_int,
        default=None,
        help="calls per repeat (default 5; 1 with --quick)",
    )
    parser.add_argument(
        "--train-samples",
        type=common.positive_int,
        default=None,
        help=f"images of the training epoch before timing (default all; "
        f"{QUICK_TRAIN_SAMPLES} with --quick)",
    )
    args = common.parse_args(parser)
    if args.number is None:
        args.number = 1 if args.quick else 5
    if args.train_samples is None and args.quick:
        args.train_samples = QUICK_TRAIN_SAMPLES
    threads = common.set_threads(args.threads)
    data = common.load_data(args)
    test_images, test_labels = data.test_images, data.test_labels
    if args.quick:
        test_images = test_images[:QUICK_TEST_SAMPLES]
        test_labels = test_labels[:QUICK_TEST_SAMPLES]

    net = common.build_net(data.train_images.shape[1], args.hidden)
    train = slice(0, args.train_samples)
    fcnn.train(
        net,
        SGD(net, lr=common.LR, lr_scheduler=None),
        DataLoader((data.train_images[train], data.train_labels[train]), batch_size=64, seed=0),
        epochs=1,
        progress=False,
        fused=True,
    )
    params = common.net_params(net)
    predictors = {
        "fcnn.predict": lambda: fcnn.predict(net, test_images, batch_size=args.batch_size),
        "NumPy float32": lambda: common.numpy_predict(params, test_images, args.batch_size),
    }
    if common.use_torch(args):
        predictors["PyTorch no_grad"] = torch_predictor(params, test_images, args.batch_size)
    cases = [
        common.Case(
            label=name,
            run=lambda predict=predict: timed(predict, args.number),
            warm_up=predict,
            info={"name": name},
        )
        for name, predict in predictors.items()
    ]
    common.run_cases(cases, args.repeats)

    reference = cases[0].runs[-1].extra["predictions"]
    baseline = cases[1].median
    count = len(test_labels)
    rows = []
    for case in cases:
        predictions = case.runs[-1].extra["predictions"]
        case.info.update(
            images=count,
            ms_per_10k=case.median / count * 1e7,
            us_per_image=case.median / count * 1e6,
            agreement_with_fcnn=float((predictions == reference).mean()),
            test_accuracy=float((predictions == test_labels).mean()),
        )
        rows.append(
            [
                case.info["name"],
                f"{case.info['ms_per_10k']:.2f}",
                f"{case.info['us_per_image']:.3f}",
                common.ratio(baseline, case.median),
                f"{case.info['agreement_with_fcnn']:.2%}",
                f"{case.info['test_accuracy']:.2%}",
            ]
        )
    quick = " [QUICK: not a result]" if args.quick else ""
    common.print_table(
        f"predicting {count:,} test images with 784-{args.hidden}-10, batches of "
        f"{args.batch_size}, {threads} thread(s), median of {args.repeats} x mean of "
        f"{args.number}{quick}",
        ["contender", "ms per 10k", "us/image", "vs NumPy f32", "agrees w/ fcnn", "test acc"],
        rows,
    )
    common.write_results(
        args,
        "inference",
        threads,
        {
            "hidden": args.hidden,
            "batch_size": args.batch_size,
            "images": count,
            "cases": [case.record() for case in cases],
        },
    )


if __name__ == "__main__":
    main()
