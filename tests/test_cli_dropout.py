"""`fcnn train --dropout P` on a 2,000-image subset of MNIST: help, validation, the net and
the settings it saves, and --resume keeping the rate."""

import json

import pytest

import fcnn
from fcnn import cli
from fcnn.cli import _config_from_args, _parser, main
from fcnn.datasets import load_mnist
from fcnn.functional import Dropout, Linear, ReLU, Softmax
from fcnn.training import TrainConfig, build_model


@pytest.fixture
def small_mnist(mnist_dir, monkeypatch):
    """fcnn train's MNIST cut to 2,000 training and 500 test images, to stay fast."""
    (train_images, train_labels), (test_images, test_labels) = load_mnist(
        mnist_dir, download=False, progress=False
    )

    def subset(*args, split=None, **kwargs):
        train = (train_images[:2000], train_labels[:2000])
        test = (test_images[:500], test_labels[:500])
        return {None: (train, test), "train": train, "test": test}[split]

    monkeypatch.setitem(cli._DATASETS, "mnist", (subset, cli._DATASETS["mnist"][1]))
    return ["--data-dir", str(mnist_dir), "--no-download"]


def test_help_shows_dropout_and_it_defaults_to_off(capsys):
    assert _config_from_args(_parser().parse_args(["train"])).dropout == 0.0
    assert TrainConfig().dropout == 0.0
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--dropout P dropout rate in [0, 1)" in help_text
    assert "(default: 0; 0 with --augment)" in help_text


@pytest.mark.parametrize("value", ["1", "-0.5", "nan"])
def test_bad_rates_are_usage_errors(value, tmp_path, capsys):
    status = main(["train", "--dropout", value, "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2
    assert f"--dropout {float(value)}: dropout must be in [0, 1)" in err
    assert "Traceback" not in err and not any(tmp_path.iterdir())


def test_build_model_puts_dropout_after_each_hidden_relu():
    net = build_model(20, 3, TrainConfig(hidden=(8, 8), dropout=0.3, seed=4))
    kinds = [type(layer) for layer in net.layers]
    assert kinds == [Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear, Softmax]
    first, second = net.layers[2], net.layers[5]
    assert first.p == second.p == 0.3 and first.seed != second.seed  # equal widths, other masks
    again = build_model(20, 3, TrainConfig(hidden=(8, 8), dropout=0.3, seed=4))
    assert [layer.seed for layer in again.layers[2::3]] == [first.seed, second.seed]
    plain = build_model(20, 3, TrainConfig(hidden=(8, 8), seed=4))
    assert Dropout not in [type(layer) for layer in plain.layers]
    # the same initial weights with and without dropout
    for with_dropout, without in zip(net.linear_layers(), plain.linear_layers(), strict=True):
        assert (with_dropout.weight == without.weight).all()
    with pytest.raises(ValueError, match=r"^dropout must be in \[0, 1\)"):
        build_model(20, 3, TrainConfig(dropout=1.0))


def test_train_with_dropout_saves_it_and_resume_keeps_it(
    small_mnist, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    args = ["train", *small_mnist, "--hidden", "32", "--lr", "0.05", "--no-progress"]
    assert main([*args, "--epochs", "1", "--dropout", "0.25", "--out", str(out)]) == 0
    record = json.loads((out / "history.json").read_text())
    assert record["config"]["dropout"] == 0.25
    assert len(record["history"]["epoch"]) == 1
    checkpoint = fcnn.load_checkpoint(out / "model.npz")
    assert checkpoint.metadata["config"]["dropout"] == 0.25
    net = fcnn.load(out / "model.npz")
    dropouts = [layer for layer in net.layers if isinstance(layer, Dropout)]
    assert len(dropouts) == 1 and dropouts[0].p == 0.25
    capsys.readouterr()
    # --resume continues with the saved rate; another one is refused
    assert (
        main(
            [
                *args,
                "--epochs",
                "2",
                "--dropout",
                "0.5",
                "--resume",
                str(out / "model.npz"),
                "--out",
                str(tmp_path / "other"),
            ]
        )
        == 2
    )
    assert "--dropout 0.5 differs from the resumed run's 0.25" in capsys.readouterr().err
    # the resumed run's masks go on from the saved step count, not from step 0 again
    started_at = []
    real_train = cli.train

    def watched_train(net, optimizer, *rest, **keywords):
        started_at.append(
            (
                [layer.step for layer in net.layers if isinstance(layer, Dropout)],
                optimizer.step_count,
            )
        )
        return real_train(net, optimizer, *rest, **keywords)

    monkeypatch.setattr(cli, "train", watched_train)
    assert (
        main(
            [
                *args,
                "--epochs",
                "2",
                "--resume",
                str(out / "model.npz"),
                "--out",
                str(tmp_path / "resumed"),
            ]
        )
        == 0
    )
    assert started_at == [([32], 32)]  # 2,000 images in batches of 64: 32 steps an epoch
    resumed_net = fcnn.load(tmp_path / "resumed" / "model.npz")
    assert [layer.seed for layer in resumed_net.layers if isinstance(layer, Dropout)] == [
        dropouts[0].seed
    ]
    resumed = json.loads((tmp_path / "resumed" / "history.json").read_text())
    assert resumed["config"]["dropout"] == 0.25 and resumed["history"]["epoch"] == [1, 2]


def test_old_settings_without_dropout_still_load():
    settings = TrainConfig().to_dict()
    del settings["dropout"]
    assert TrainConfig.from_dict(settings).dropout == 0.0
