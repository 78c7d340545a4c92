"""The ``fcnn`` command end to end on the real MNIST: train, evaluate, predict, and its errors.

Exit status: 0 done, 1 runtime error, 2 usage error, 130 interrupted (see fcnn/cli.py).
"""

import argparse
import errno
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fcnn
from fcnn import cli
from fcnn.cli import _has_early_stopping, _parser, main
from fcnn.datasets import load_mnist
from fcnn.functional import Linear, ReLU, Softmax
from fcnn.nn import Module

SMALL = ["--epochs", "1", "--hidden", "32", "--lr", "0.05"]


def data_args(mnist_dir):
    return ["--data-dir", str(mnist_dir), "--no-download"]


def one_line_error(err, *parts):
    """The error is one line, with no traceback, and says each of ``parts``."""
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for part in parts:
        assert part in err, err


@pytest.fixture(scope="module")
def trained(mnist_dir, tmp_path_factory):
    """A one-epoch run of a small net through `fcnn train`."""
    out = tmp_path_factory.mktemp("run")
    status = main(
        [
            "train",
            *data_args(mnist_dir),
            "--epochs",
            "1",
            "--hidden",
            "64",
            "--lr",
            "0.05",
            "--val-size",
            "10000",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert status == 0
    return out


@pytest.fixture(scope="module")
def test_only_dir(mnist_dir, tmp_path_factory):
    """A folder holding MNIST's two test files and nothing else."""
    folder = tmp_path_factory.mktemp("test-only")
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        for candidate in (mnist_dir / f"{name}.gz", mnist_dir / name):
            if candidate.exists():
                (folder / candidate.name).symlink_to(candidate)
                break
    return folder


# ---------------------------------------------------------------------------- train


def test_train_writes_model_history_and_curves(trained):
    assert (trained / "model.npz").is_file()
    record = json.loads((trained / "history.json").read_text())
    history = record["history"]
    assert history["epoch"] == [1]
    assert history["val_accuracy"][0] > 0.85 and history["test_accuracy"][0] > 0.85
    assert record["config"]["hidden"] == [64]
    checkpoint = fcnn.load_checkpoint(trained / "model.npz")
    assert checkpoint.metadata["dataset"] == "mnist"
    assert checkpoint.metadata["class_names"] == [str(d) for d in range(10)]
    assert checkpoint.metadata["val_size"] == 10000
    pytest.importorskip("matplotlib", reason="curves.png needs matplotlib")
    assert (trained / "curves.png").stat().st_size > 10_000


def test_plot_curves_has_loss_and_accuracy_side_by_side():
    pytest.importorskip("matplotlib", reason="fcnn.plot needs matplotlib")
    from fcnn.plot import plot_curves

    history = {
        "epoch": [1, 2],
        "train_loss": [0.5, 0.3],
        "test_loss": [0.4, 0.35],
        "train_accuracy": [0.8, 0.9],
        "test_accuracy": [0.85, 0.88],
    }
    loss_axes, accuracy_axes = plot_curves(history).axes
    assert [line.get_label() for line in loss_axes.lines] == ["train", "test"]
    assert list(accuracy_axes.lines[1].get_ydata()) == [85.0, 88.0]
    with pytest.raises(ValueError, match="accuracy"):
        plot_curves({"train_loss": [0.5]})


def test_train_on_all_images_with_plain_sgd(mnist_dir, tmp_path):
    assert (
        main(
            [
                "train",
                *data_args(mnist_dir),
                "--epochs",
                "1",
                "--hidden",
                "16",
                "--lr",
                "0.1",
                "--momentum",
                "0",
                "--no-nesterov",
                "--threads",
                "1",
                "--out",
                str(tmp_path),
                "--no-progress",
            ]
        )
        == 0
    )
    record = json.loads((tmp_path / "history.json").read_text())
    assert "val_accuracy" not in record["history"]
    assert record["config"]["momentum"] == 0 and record["config"]["nesterov"] is False
    assert record["history"]["train_accuracy"][0] > 0.8


def test_without_matplotlib_a_note_instead_of_curves(mnist_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fcnn.plot", None)  # import fcnn.plot fails
    assert (
        main(["train", *data_args(mnist_dir), *SMALL, "--out", str(tmp_path), "--no-progress"]) == 0
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["history.json", "model.npz"]
    assert "note: curves.png needs matplotlib" in capsys.readouterr().err


@pytest.mark.slow  # trains on real MNIST several times
def test_no_progress_keeps_epoch_lines_quiet_drops_them(mnist_dir, tmp_path, capsys):
    assert (
        main(
            [
                "train",
                *data_args(mnist_dir),
                *SMALL,
                "--epochs",
                "2",
                "--out",
                str(tmp_path / "a"),
                "--no-progress",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line.split("  ")[0] for line in lines if line.startswith("epoch ")] == [
        "epoch 1",
        "epoch 2",
    ]
    assert "weighted avg" in captured.out and "epoch 1/2" not in captured.err
    assert (
        main(
            [
                "train",
                *data_args(mnist_dir),
                *SMALL,
                "--epochs",
                "2",
                "--out",
                str(tmp_path / "b"),
                "--quiet",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert captured.err == ""
    assert len(captured.out.splitlines()) == 1 and captured.out.startswith("test accuracy")


@pytest.mark.slow  # trains on real MNIST several times
def test_resume_continues_exactly(mnist_dir, tmp_path):
    common = [*data_args(mnist_dir), "--hidden", "16", "--val-size", "50000", "-q"]
    assert main(["train", *common, "--epochs", "3", "--out", str(tmp_path / "straight")]) == 0
    assert main(["train", *common, "--epochs", "2", "--out", str(tmp_path / "first")]) == 0
    # Settings and split come from the file: only --epochs (the total) is needed.
    assert (
        main(
            [
                "train",
                *data_args(mnist_dir),
                "-q",
                "--resume",
                str(tmp_path / "first" / "model.npz"),
                "--epochs",
                "3",
                "--out",
                str(tmp_path / "resumed"),
            ]
        )
        == 0
    )
    straight = fcnn.load_checkpoint(tmp_path / "straight" / "model.npz")
    resumed = fcnn.load_checkpoint(tmp_path / "resumed" / "model.npz")
    for a, b in zip(straight.net.parameters(), resumed.net.parameters(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert (
        straight.metadata["history"]["epoch"] == resumed.metadata["history"]["epoch"] == [1, 2, 3]
    )
    assert straight.metadata["history"]["val_loss"] == resumed.metadata["history"]["val_loss"]
    assert straight.optimizer_state["step_count"] == resumed.optimizer_state["step_count"]


def test_resume_refusals(trained, mnist_dir, tmp_path, capsys):
    model = str(trained / "model.npz")
    assert (
        main(
            [
                "train",
                *data_args(mnist_dir),
                "--resume",
                model,
                "--epochs",
                "1",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    one_line_error(capsys.readouterr().err, "has trained 1 epochs already", "--epochs")
    assert (
        main(
            [
                "train",
                *data_args(mnist_dir),
                "--resume",
                model,
                "--epochs",
                "2",
                "--lr",
                "0.3",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    one_line_error(capsys.readouterr().err, "--lr 0.3 differs from the resumed run's 0.05")
    assert (
        main(
            [
                "train",
                *data_args(mnist_dir),
                "--resume",
                str(tmp_path / "none.npz"),
                "--out",
                str(tmp_path),
            ]
        )
        == 1
    )
    one_line_error(capsys.readouterr().err, "no model file at")


@pytest.mark.slow  # trains on real MNIST until it stops
def test_early_stopping_flag(mnist_dir, tmp_path, capsys):
    if not _has_early_stopping():
        # This fcnn's TrainConfig/train have no early stopping: the flag is not offered.
        with pytest.raises(SystemExit) as raised:
            main(["train", "--early-stopping", "2"])
        assert raised.value.code == 2
        return
    assert (
        main(
            [
                "train",
                *data_args(mnist_dir),
                *SMALL,
                "--early-stopping",
                "2",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    one_line_error(capsys.readouterr().err, "--val-size")
    assert (
        main(
            [
                "train",
                *data_args(mnist_dir),
                *SMALL,
                "--epochs",
                "2",
                "--early-stopping",
                "1",
                "--val-size",
                "10000",
                "-q",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    checkpoint = fcnn.load_checkpoint(tmp_path / "model.npz")
    assert checkpoint.metadata["config"]["early_stopping"] == 1


def test_failed_final_save_rescues_the_model(mnist_dir, tmp_path, monkeypatch, capsys):
    real_save = cli.save
    out = tmp_path / "out"

    def disk_full_in_out(net, path, **kwargs):
        if Path(path).parent == out:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(net, path, **kwargs)

    monkeypatch.setattr(cli, "save", disk_full_in_out)
    assert main(["train", *data_args(mnist_dir), *SMALL, "--out", str(out), "-q"]) == 1
    err = capsys.readouterr().err
    one_line_error(err, f"cannot write to {out}", "No space left on device", "saved the model to")
    rescued = Path(err.split("saved the model to ")[1].split(" instead")[0])
    assert rescued.parent != out and rescued.name == "model.npz"
    net = fcnn.load(rescued)
    assert net.linear_layers()[0].num_outputs == 32
    assert (rescued.parent / "history.json").is_file()


# ---------------------------------------------------------------------------- evaluate


def swallowed_ctrl_c(function):
    """``function`` after a SIGINT whose KeyboardInterrupt is lost, as in C code that clears
    errors (seen: one raised inside an isinstance() check while ``fcnn train`` started)."""

    def wrapper(*args, **kwargs):
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass
        return function(*args, **kwargs)

    return wrapper


def test_lost_ctrl_c_before_training_stops_train(mnist_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "_load_split", swallowed_ctrl_c(cli._load_split))
    out = tmp_path / "run"
    status = main(["train", *data_args(mnist_dir), *SMALL, "--out", str(out), "--no-progress"])
    assert status == 130
    assert (
        capsys.readouterr().err == "fcnn train: interrupted before the first step; nothing saved\n"
    )
    assert not (out / "model.npz").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_lost_ctrl_c_still_ends_evaluate_with_130(trained, mnist_dir, monkeypatch, capsys):
    monkeypatch.setattr(cli, "evaluate", swallowed_ctrl_c(cli.evaluate))
    status = main(["evaluate", "--model", str(trained / "model.npz"), *data_args(mnist_dir)])
    assert status == 130
    assert capsys.readouterr().err == "fcnn evaluate: interrupted\n"


def test_a_callers_own_sigint_handler_is_kept(trained, mnist_dir, capsys):
    calls = []

    def own(signum, frame):
        calls.append(signum)

    previous = signal.signal(signal.SIGINT, own)
    try:
        assert main(["evaluate", "--model", str(trained / "model.npz"), *data_args(mnist_dir)]) == 0
        assert signal.getsignal(signal.SIGINT) is own
        signal.raise_signal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert calls == [signal.SIGINT]


def test_evaluate_json_matches_training_history(trained, mnist_dir, capsys):
    status = main(
        ["evaluate", "--model", str(trained / "model.npz"), *data_args(mnist_dir), "--json"]
    )
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    history = json.loads((trained / "history.json").read_text())["history"]
    assert result["accuracy"] == pytest.approx(history["test_accuracy"][-1], abs=1e-12)
    assert result["dataset"] == "mnist"
    matrix = np.array(result["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 10_000
    assert set(result["report"]) >= {"0", "9", "accuracy", "macro avg", "weighted avg"}


def test_evaluate_needs_only_the_test_files(trained, test_only_dir, capsys):
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(trained / "model.npz"),
                "--data-dir",
                str(test_only_dir),
                "--no-download",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "precision" in out and "weighted avg" in out and "mnist test accuracy" in out


def test_evaluate_asks_the_loader_for_the_test_split_only(trained, mnist_dir, monkeypatch, capsys):
    calls = []

    def load_with_split(root=None, download=True, progress=True, *, split=None):
        calls.append(split)
        train_data, test_data = load_mnist(root, download=download, progress=progress)
        return test_data if split == "test" else (train_data, test_data)

    monkeypatch.setitem(cli._DATASETS, "mnist", (load_with_split, cli.MNIST_CLASSES))
    assert (
        main(["evaluate", "--model", str(trained / "model.npz"), *data_args(mnist_dir), "--json"])
        == 0
    )
    assert calls == ["test"] and json.loads(capsys.readouterr().out)["accuracy"] > 0.85


def test_evaluate_defaults_to_the_models_data_set(tmp_path, mnist_dir, capsys):
    net = Module(Linear(784, 10), Softmax())
    fcnn.save(net, tmp_path / "fashion.npz", metadata={"dataset": "fashion-mnist"})
    status = main(
        [
            "evaluate",
            "--model",
            str(tmp_path / "fashion.npz"),
            "--data-dir",
            str(mnist_dir),
            "--no-download",
            "--json",
        ]
    )
    captured = capsys.readouterr()
    if status == 0:  # Fashion-MNIST is installed (e.g. /usr/share/datasets/fashion-mnist)
        assert json.loads(captured.out)["dataset"] == "fashion-mnist"
    else:  # only MNIST here: the model's own data set is what is missing
        assert status == 1 and "Fashion" in captured.err and "Traceback" not in captured.err
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(tmp_path / "fashion.npz"),
                "--dataset",
                "mnist",
                "--data-dir",
                str(mnist_dir),
                "--no-download",
                "--json",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert json.loads(captured.out)["dataset"] == "mnist"
    one_line_error(
        captured.err, "warning: ", "was trained on fashion-mnist, evaluating it on mnist"
    )


@pytest.mark.parametrize(
    "layers, message",
    [
        ([Linear(784, 5), Softmax()], "has 5 classes, but the mnist labels go up to 9"),
        (
            [Linear(100, 16), ReLU(), Linear(16, 10)],
            "takes 100 inputs per image, but the mnist images have 784 pixels",
        ),
    ],
)
def test_evaluate_a_model_that_does_not_fit_the_data(layers, message, tmp_path, mnist_dir, capsys):
    fcnn.save(Module(layers), tmp_path / "m.npz", metadata={"dataset": "mnist"})
    assert main(["evaluate", "--model", str(tmp_path / "m.npz"), *data_args(mnist_dir)]) == 1
    one_line_error(capsys.readouterr().err, message)


# ---------------------------------------------------------------------------- predict


def test_predict_npy_and_idx(trained, mnist_dir, tmp_path, capsys):
    _, (test_images, _) = load_mnist(mnist_dir, download=False, progress=False)
    images_path = tmp_path / "five.npy"
    np.save(images_path, test_images[:5])
    assert main(["predict", "--model", str(trained / "model.npz"), str(images_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    net = fcnn.load(trained / "model.npz")
    expected = fcnn.predict(net, test_images[:5])
    assert [line.split("\t")[0] for line in lines] == [f"{images_path}[{i}]" for i in range(5)]
    assert [int(line.split("\t")[1].split()[0]) for line in lines] == expected.tolist()
    np.save(images_path, test_images[7])  # a single (28, 28) image is one image
    assert main(["predict", "--model", str(trained / "model.npz"), "--json", str(images_path)]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["predictions"][0]["class"] == fcnn.predict(net, test_images[7:8])[0]
    idx_path = mnist_dir / "t10k-images-idx3-ubyte.gz"
    if idx_path.exists():
        assert main(["predict", "--model", str(trained / "model.npz"), str(idx_path)]) == 0
        assert len(capsys.readouterr().out.splitlines()) == 10_000


@pytest.mark.parametrize(
    "array, message",
    [
        (
            np.zeros((3, 100), np.uint8),
            "takes images of 784 pixels, got an array of shape (3, 100)",
        ),
        (np.full((2, 784), np.nan), "NaN or infinite"),
        (np.array(["a", "b"]), "images must be numbers"),
    ],
)
def test_predict_bad_arrays(trained, tmp_path, array, message, capsys):
    np.save(tmp_path / "x.npy", array)
    assert main(["predict", "--model", str(trained / "model.npz"), str(tmp_path / "x.npy")]) == 1
    one_line_error(capsys.readouterr().err, message)


def test_predict_a_file_that_is_no_images(trained, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert (
        main(["predict", "--model", str(trained / "model.npz"), str(tmp_path / "notes.txt")]) == 1
    )
    one_line_error(capsys.readouterr().err, "not a .npy, IDX or image file")


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "argv, message",
    [
        (["evaluate", "--model", "no/such/model.npz", "--no-download"], "no model file at"),
        (["predict", "--model", "no/such/model.npz", "x.npy"], "no model file at"),
    ],
)
def test_missing_files_are_one_line_errors(argv, message, capsys):
    assert main(argv) == 1
    one_line_error(capsys.readouterr().err, message)


def test_model_path_is_a_folder(tmp_path, capsys):
    assert main(["evaluate", "--model", str(tmp_path), "--no-download"]) == 1
    one_line_error(capsys.readouterr().err, "is a folder, not a model file")


def test_missing_images_file(trained, capsys):
    assert main(["predict", "--model", str(trained / "model.npz"), "nothing.npy"]) == 1
    one_line_error(capsys.readouterr().err, "no images file at nothing.npy")


def test_missing_data_set_says_how_to_point_at_it(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--data-dir",
                str(tmp_path),
                "--no-download",
                "--epochs",
                "1",
                "--out",
                str(tmp_path / "run"),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.startswith("fcnn train: error: ") and "Traceback" not in err
    assert str(tmp_path) in err and "train-images-idx3-ubyte" in err
    assert "--data-dir" in err and "FCNN_DATA" in err
    assert sorted(tmp_path.iterdir()) == []  # no empty data or run folder left behind


def test_corrupt_model_file(tmp_path, capsys):
    bad = tmp_path / "model.npz"
    bad.write_bytes(b"not a model")
    assert main(["evaluate", "--model", str(bad), "--no-download"]) == 1
    one_line_error(capsys.readouterr().err, "model.npz")


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--epochs", "0"],
        ["train", "--bogus"],
        ["fly"],
        ["train", "--lr", "fast"],
        ["train", "--seed", "-1"],
        ["predict", "--model", "m.npz"],
        [],
        ["predict", "--model", "m.npz", "--top-k", "0", "x.png"],
    ],
)
def test_wrong_flags_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--lr", "-1"], "--lr -1.0: initial_lr must be finite and >= 0"),
        (["--lr-decay", "0"], "--lr-decay 0.0: lr_decay must be in (0, 1]"),
        (["--weight-decay", "-1"], "--weight-decay -1.0: weight_decay must be finite"),
        (["--momentum", "1"], "--momentum 1.0: momentum must be in [0, 1)"),
        (["--hidden", "100000000"], "--hidden 100000000: the net would need"),
        (["--val-size", "60000"], "--val-size 60000: val_size must be in [1, 59999]"),
        (["--threads", "100000"], "--threads 100000: this machine has"),
    ],
)
def test_bad_settings_exit_2_with_one_line(flags, message, tmp_path, mnist_dir, capsys):
    assert (
        main(["train", *data_args(mnist_dir), *SMALL, *flags, "--out", str(tmp_path / "run")]) == 2
    )
    one_line_error(capsys.readouterr().err, message)
    assert not (tmp_path / "run").exists()


def test_divergence_exit_1_nothing_saved(mnist_dir, tmp_path, capsys):
    assert (
        main(
            [
                "train",
                *data_args(mnist_dir),
                "--hidden",
                "16",
                "--lr",
                "1e6",
                "--out",
                str(tmp_path / "run"),
                "-q",
            ]
        )
        == 1
    )
    one_line_error(capsys.readouterr().err, "training diverged", "try a smaller learning rate")
    assert not (tmp_path / "run" / "model.npz").exists()


@pytest.mark.parametrize(
    "out, message",
    [
        ("afile", "--out {out} is a file"),
        ("afile/run", "cannot create --out {out}: {base}/afile is a file"),
    ],
)
def test_unusable_out_exit_1_before_training(out, message, mnist_dir, tmp_path, capsys):
    (tmp_path / "afile").write_text("a file, not a folder")
    out = tmp_path / out
    assert main(["train", *data_args(mnist_dir), *SMALL, "--out", str(out), "-q"]) == 1
    one_line_error(capsys.readouterr().err, message.format(out=out, base=tmp_path))


def test_data_dir_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["evaluate", "--model", "m.npz", "--data-dir", str(tmp_path / "f")]) == 1
    assert "no model file" in capsys.readouterr().err
    assert main(["train", "--data-dir", str(tmp_path / "f"), "--out", str(tmp_path / "r")]) == 1
    one_line_error(capsys.readouterr().err, "is a file, not a folder")


# ---------------------------------------------------------------------------- the parser


def test_version(capsys):
    with pytest.raises(SystemExit) as raised:
        main(["--version"])
    assert raised.value.code == 0
    assert capsys.readouterr().out.strip() == f"fcnn {fcnn.__version__}"


def test_every_option_shows_its_default():
    parser = _parser()
    commands = next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    )
    checked = 0
    for name, sub in commands.choices.items():
        formatter = sub._get_formatter()
        for action in sub._actions:
            if (
                isinstance(action, argparse._HelpAction)
                or action.required
                or not action.option_strings
            ):
                continue
            text = formatter._get_help_string(action)
            assert "default" in text, f"fcnn {name} {action.option_strings[0]}: {text!r}"
            checked += 1
    assert checked > 30
    for help_text in [
        parser.format_help(),
        *(sub.format_help() for sub in commands.choices.values()),
    ]:
        assert "(default: None)" not in help_text
    help_text = " ".join(commands.choices["train"].format_help().split())
    for shown in (
        "--epochs EPOCHS epochs to train",
        "(default: 64)",
        "(default: 0)",
        "(default: 1024)",
        "(default: fcnn-run)",
    ):
        assert shown in help_text


def test_python_dash_m_fcnn(tmp_path):
    # Away from the checkout, whose fcnn/ (no compiled core) would shadow the installed one.
    done = subprocess.run(
        [sys.executable, "-m", "fcnn", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    for command in ("train", "evaluate", "predict", "export", "search"):
        assert command in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "fcnn", "--version"], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0 and done.stdout.strip() == f"fcnn {fcnn.__version__}"


# ---------------------------------------------------------------------------- optional extras


def test_export_without_onnx_says_what_to_install(tmp_path, monkeypatch, capsys):
    fcnn.save(Module(Linear(4, 2)), tmp_path / "m.npz")
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx fails
    assert (
        main(["export", "--model", str(tmp_path / "m.npz"), "--out", str(tmp_path / "m.onnx")]) == 1
    )
    one_line_error(capsys.readouterr().err, "pip install fcnn[onnx]")
    assert not (tmp_path / "m.onnx").exists()


def test_predict_images_without_pillow_says_what_to_install(tmp_path, monkeypatch, capsys):
    fcnn.save(Module(Linear(784, 10), Softmax()), tmp_path / "m.npz")
    (tmp_path / "digit.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    np.save(tmp_path / "digits.npy", np.zeros((2, 28, 28), np.uint8))
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL fails
    assert main(["predict", "--model", str(tmp_path / "m.npz"), str(tmp_path / "digit.png")]) == 1
    one_line_error(capsys.readouterr().err, "pip install fcnn[images]")
    # .npy files need no Pillow.
    assert main(["predict", "--model", str(tmp_path / "m.npz"), str(tmp_path / "digits.npy")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


# ---------------------------------------------------------------------------- start-up


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["/venv/bin/python", "/venv/bin/fcnn", "train"], True),
        (["python", "-m", "fcnn", "train"], True),
        (["python", "-X", "dev", "-m", "fcnn"], True),
        (["python", "-mfcnn"], True),
        (["python", "-m", "pytest", "tests"], False),
        (["python", "-c", "import fcnn", "-m", "fcnn"], False),
        (["python", "script.py", "-m", "fcnn"], False),
        (["python"], False),
    ],
)
def test_only_the_fcnn_command_gets_the_start_up_handler(argv, expected):
    from fcnn._cli_startup import _is_fcnn_command

    assert _is_fcnn_command(argv) is expected


def test_importing_fcnn_elsewhere_leaves_sigint_alone(tmp_path):
    code = (
        "import signal, fcnn; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert done.stdout.strip() == "True"


def test_python_dash_m_fcnn_interrupted_exits_130_after_exec(tmp_path):
    """Under ``python -m``, CPython turns any exit into SIGINT (-2) once a KeyboardInterrupt
    has passed through exec() of a string, caught or not; fcnn still exits with 130."""
    (tmp_path / "probe.py").write_text(
        "import runpy\n"
        "import fcnn.cli\n"
        "def parser():\n"
        "    exec('raise KeyboardInterrupt')  # as a Ctrl-C while a dataclass is created\n"
        "fcnn.cli._parser = parser\n"
        "runpy.run_module('fcnn', run_name='__main__')\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "probe", "train"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (result.returncode, result.stderr) == (130, "fcnn: interrupted\n")
