"""The ``fcnn`` command end to end on the real MNIST: train, evaluate, predict, and its errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from fcnn.cli import main
from fcnn.datasets import load_mnist


@pytest.fixture(scope="module")
def trained(mnist_dir, tmp_path_factory):
    """A one-epoch run of a small net through `fcnn train`."""
    out = tmp_path_factory.mktemp("run")
    status = main(["train", "--data-dir", str(mnist_dir), "--no-download", "--epochs", "1",
                   "--hidden", "64", "--lr", "0.05", "--val-size", "10000", "--out", str(out),
                   "--no-progress"])
    assert status == 0
    return out


def test_train_writes_model_and_history(trained, capsys):
    assert (trained / "model.npz").is_file()
    record = json.loads((trained / "history.json").read_text())
    history = record["history"]
    assert history["epoch"] == [1]
    assert history["val_accuracy"][0] > 0.85 and history["test_accuracy"][0] > 0.85
    assert record["config"]["hidden"] == [64]
    checkpoint_meta = np.load(trained / "model.npz", allow_pickle=False)
    assert "layers.0.weight" in checkpoint_meta.files


def test_train_on_all_images_with_plain_sgd(mnist_dir, tmp_path):
    assert main(["train", "--data-dir", str(mnist_dir), "--no-download", "--epochs", "1",
                 "--hidden", "16", "--lr", "0.1", "--momentum", "0", "--no-nesterov",
                 "--threads", "1", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    record = json.loads((tmp_path / "history.json").read_text())
    assert "val_accuracy" not in record["history"]
    assert record["config"]["momentum"] == 0 and record["config"]["nesterov"] is False
    assert record["history"]["train_accuracy"][0] > 0.8


def test_evaluate_json_matches_training_history(trained, mnist_dir, capsys):
    status = main(["evaluate", "--model", str(trained / "model.npz"), "--data-dir",
                   str(mnist_dir), "--no-download", "--json"])
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    history = json.loads((trained / "history.json").read_text())["history"]
    assert result["accuracy"] == pytest.approx(history["test_accuracy"][-1], abs=1e-12)
    matrix = np.array(result["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 10_000
    assert set(result["report"]) >= {"0", "9", "accuracy", "macro avg", "weighted avg"}


def test_evaluate_prints_report(trained, mnist_dir, capsys):
    assert main(["evaluate", "--model", str(trained / "model.npz"), "--data-dir",
                 str(mnist_dir), "--no-download"]) == 0
    out = capsys.readouterr().out
    assert "precision" in out and "weighted avg" in out and "test accuracy" in out


def test_predict_npy_and_idx(trained, mnist_dir, tmp_path, capsys):
    _, (test_images, _) = load_mnist(mnist_dir, download=False, progress=False)
    images_path = tmp_path / "five.npy"
    np.save(images_path, test_images[:5])
    assert main(["predict", "--model", str(trained / "model.npz"), str(images_path)]) == 0
    lines = capsys.readouterr().out.split()
    assert len(lines) == 5 and all(line.isdigit() for line in lines)
    idx_path = mnist_dir / "t10k-images-idx3-ubyte.gz"
    if idx_path.exists():
        assert main(["predict", "--model", str(trained / "model.npz"), str(idx_path)]) == 0
        assert len(capsys.readouterr().out.split()) == 10_000


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "--model", "no/such/model.npz", "--no-download"], "no model file at"),
    (["predict", "--model", "no/such/model.npz", "x.npy"], "no model file at"),
])
def test_missing_files_are_one_line_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_missing_images_file(trained, capsys):
    assert main(["predict", "--model", str(trained / "model.npz"), "nothing.npy"]) == 2
    assert "no images file at nothing.npy" in capsys.readouterr().err


def test_missing_data_set_names_folder(tmp_path, capsys):
    assert main(["train", "--data-dir", str(tmp_path), "--no-download", "--epochs", "1",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "train-images-idx3-ubyte" in err and err.count("\n") == 1


def test_corrupt_model_file(tmp_path, capsys):
    bad = tmp_path / "model.npz"
    bad.write_bytes(b"not a model")
    assert main(["evaluate", "--model", str(bad), "--no-download"]) == 2
    assert "model.npz" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["train", "--epochs", "0"], ["train", "--bogus"], ["fly"],
                                  ["train", "--lr", "fast"]])
def test_wrong_flags_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2


def test_bad_setting_is_one_line_error(tmp_path, mnist_dir, capsys):
    assert main(["train", "--data-dir", str(mnist_dir), "--no-download", "--lr", "-1",
                 "--out", str(tmp_path)]) == 2
    assert "lr must be finite and >= 0" in capsys.readouterr().err


def test_python_dash_m_fcnn(tmp_path):
    # Away from the checkout, whose fcnn/ (no compiled core) would shadow the installed one.
    done = subprocess.run([sys.executable, "-m", "fcnn", "--help"], capture_output=True,
                          text=True, check=True, cwd=tmp_path)
    assert "train" in done.stdout and "evaluate" in done.stdout and "predict" in done.stdout
