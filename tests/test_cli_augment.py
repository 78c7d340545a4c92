"""``fcnn train --augment`` and the strength flags, on a small subset of the real MNIST."""

import json

import numpy as np
import pytest

import fcnn
from fcnn import cli
from fcnn.augmentation import RECOMMENDED
from fcnn.cli import _config_from_args, _parser, main

SMALL = ["--hidden", "16", "--lr", "0.05", "--batch-size", "50", "--no-progress", "-q"]


@pytest.fixture
def subset(mnist_dir, monkeypatch):
    """MNIST cut to 1,500 training and 300 test images, behind the command's own loading."""
    load_split = cli._load_split

    def small(*args, **kwargs):
        (train_images, train_labels), (test_images, test_labels) = load_split(*args, **kwargs)
        return (train_images[:1500], train_labels[:1500]), (test_images[:300], test_labels[:300])

    monkeypatch.setattr(cli, "_load_split", small)
    return ["--data-dir", str(mnist_dir), "--no-download"]


def test_augment_flags_are_recorded_and_trained_with(subset, tmp_path):
    out = tmp_path / "run"
    argv = ["train", *subset, *SMALL, "--epochs", "1", "--augment", "--rotate", "5"]
    assert main([*argv, "--out", str(out)]) == 0
    record = json.loads((out / "history.json").read_text())
    expected = {**RECOMMENDED.to_dict(), "rotate": 5.0}
    assert record["config"]["augment"] == expected
    assert record["history"]["augmentation"] == {**expected, "seed": 0}
    checkpoint = fcnn.load_checkpoint(out / "model.npz")
    assert checkpoint.metadata["config"]["augment"] == expected
    # without augmentation the same run trains other weights
    assert main(["train", *subset, *SMALL, "--epochs", "1", "--out", str(tmp_path / "plain")]) == 0
    plain = fcnn.load_checkpoint(tmp_path / "plain" / "model.npz")
    assert (
        json.loads((tmp_path / "plain" / "history.json").read_text())["config"]["augment"] is None
    )
    assert not np.array_equal(checkpoint.net.parameters()[0], plain.net.parameters()[0])


def test_a_strength_flag_alone_augments_with_that_transform_only(subset, tmp_path):
    assert (
        main(["train", *subset, *SMALL, "--epochs", "1", "--shear", "0.2", "--out", str(tmp_path)])
        == 0
    )
    record = json.loads((tmp_path / "history.json").read_text())
    assert record["config"]["augment"] == fcnn.Augmentation(shear=0.2).to_dict()


@pytest.mark.slow  # trains on MNIST three times, as test_cli's resume test
def test_resume_continues_the_augmentation_exactly(subset, tmp_path):
    common = ["train", *subset, *SMALL, "--augment"]
    assert main([*common, "--epochs", "2", "--out", str(tmp_path / "straight")]) == 0
    assert main([*common, "--epochs", "1", "--out", str(tmp_path / "first")]) == 0
    first = str(tmp_path / "first" / "model.npz")
    resume = ["train", *subset, "--no-progress", "-q", "--resume", first, "--epochs", "2"]
    assert main([*resume, "--out", str(tmp_path / "resumed")]) == 0
    straight = fcnn.load_checkpoint(tmp_path / "straight" / "model.npz")
    resumed = fcnn.load_checkpoint(tmp_path / "resumed" / "model.npz")
    for a, b in zip(straight.net.parameters(), resumed.net.parameters(), strict=True):
        np.testing.assert_array_equal(a, b)
    # other strengths on resume are refused
    assert main([*resume, "--rotate", "3", "--out", str(tmp_path / "other")]) == 2


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--scale", "1.5"], "--scale 1.5: scale must be in [0, 1)"),
        (["--translate", "-1"], "--translate -1.0: translate must be"),
        (["--augment", "--elastic-sigma", "nan"], "--elastic-sigma nan: elastic_sigma must be"),
    ],
)
def test_bad_strengths_are_usage_errors(flags, says, tmp_path, capsys):
    assert main(["train", *flags, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err


def test_help_shows_the_recommended_strengths(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--augment" in out and "--elastic-alpha X" in out
    assert f"(default: {RECOMMENDED.rotate:g} with --augment, else 0)" in out


def test_augment_alone_trains_the_recommended_configuration():
    from fcnn.training import AUGMENTED_CONFIG

    config = _config_from_args(_parser().parse_args(["train", "--augment"]))
    assert config == AUGMENTED_CONFIG
    assert config.epochs == 100 and config.lr_decay == 0.5 and config.augment == RECOMMENDED
    # Flags given win over the recommended ones, and without --augment the defaults hold.
    argv = ["train", "--augment", "--epochs", "30", "--lr-decay", "0.8"]
    given = _config_from_args(_parser().parse_args(argv))
    assert given.epochs == 30 and given.lr_decay == 0.8 and given.augment == RECOMMENDED
    plain = _config_from_args(_parser().parse_args(["train"]))
    assert plain.epochs == 30 and plain.lr_decay == 0.8 and plain.augment is None


def test_search_prints_augment_for_the_recommended_warp():
    from fcnn.cli import _augmentation_flags

    assert _augmentation_flags(RECOMMENDED.to_dict()) == ["--augment"]
    assert _augmentation_flags(None) == [] and _augmentation_flags(fcnn.Augmentation()) == []
    flags = _augmentation_flags(fcnn.Augmentation(rotate=3.0))
    config = _config_from_args(_parser().parse_args(["train", *flags]))
    assert config.augment == fcnn.Augmentation(rotate=3.0)


@pytest.mark.parametrize("dataset, noted", [("fashion-mnist", True), ("mnist", False)])
def test_augment_notes_where_its_settings_were_chosen(tmp_path, capsys, dataset, noted):
    # A --data-dir that is a file fails the run before any data is read, after the note.
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    argv = ["train", "--dataset", dataset, "--augment", "--no-download"]
    argv += ["--data-dir", str(not_a_folder), "--out", str(tmp_path / "run")]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert ("note: --augment's settings were selected on MNIST" in err) == noted
    assert "is a file, not a folder" in err
