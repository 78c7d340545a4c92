"""``fcnn search`` end to end on the real MNIST (tiny settings): its files, advice and errors."""

import contextlib
import csv
import io
import json
import shlex
import sys

import pytest

from fcnn.cli import _parser, _unset_defaults, main
from fcnn.search import STAGE_GROUPS, SearchResult, stage_names
from fcnn.training import TrainConfig

try:
    from dask.distributed import Client, LocalCluster
except ImportError:  # pragma: no cover - depends on the environment
    LocalCluster = None

# Two learning rates on a 784-16-10 net, one epoch each; the other stages have one value.
# Training on 10,000 of the 60,000 images keeps each run well under a second.
TINY = [
    "--hidden",
    "16",
    "--lr",
    "0.1",
    "0.5",
    "--weight-decay",
    "0",
    "--epochs",
    "1",
    "--val-size",
    "50000",
]


def search_args(mnist_dir, out, *extra):
    return [
        "search",
        "--data-dir",
        str(mnist_dir),
        "--no-download",
        "--out",
        str(out),
        *TINY,
        *extra,
    ]


@pytest.fixture(scope="module")
def searched(mnist_dir, tmp_path_factory):
    """One `fcnn search` run and what it printed."""
    out = tmp_path_factory.mktemp("search")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(search_args(mnist_dir, out))
    return status, out, printed.getvalue()


def test_search_writes_csv_json_and_figures(searched):
    status, out, printed = searched
    assert status == 0
    names = sorted(path.name for path in out.iterdir())
    figures = [
        f"search_{stage}_{split}.png"
        for stage in ("hidden", "lr", "weight_decay")
        for split in ("train", "val")
    ]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        figures = []  # without matplotlib, a note instead (tested below)
    assert names == ["search.csv", "search.json", *figures]
    result = SearchResult.from_json(out / "search.json")
    assert [r["name"] for r in result.records] == [
        "lr=0.1",
        "lr=0.5",
        "hidden=16",
        "weight_decay=0",
    ]
    assert [r["reused"] for r in result.records] == [False, False, True, True]
    for record in result.records:
        history = record["history"]
        assert history["epoch"] == [1] and record["params"]["hidden"] == [16]
        assert record["val_accuracy"] > 0.6
        assert not [key for key in history if key.startswith("test")]
    with open(out / "search.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["name"] for row in rows] == [r["name"] for r in result.records]
    assert all((out / name).stat().st_size > 1000 for name in names if name.endswith(".png"))
    # a progress line per candidate
    assert printed.count("[lr ") == 2 and "lr=0.5: val accuracy" in printed


def test_search_prints_the_best_settings_and_the_train_command(searched):
    _, out, printed = searched
    result = SearchResult.from_json(out / "search.json")
    best = result.best_params
    assert f"best settings: lr={best['lr']} hidden=16 weight_decay=0.0" in printed
    command_line = next(
        line for line in printed.splitlines() if line.startswith("train them with: ")
    )
    command = shlex.split(command_line.removeprefix("train them with: "))
    assert command[:2] == ["fcnn", "train"]
    # The command parses and sets every chosen setting `fcnn train` has an option for, on
    # the same split; a setting it has no option for is either its default or named in a note.
    namespace = _parser().parse_args(command[1:])
    _unset_defaults(namespace)  # --epochs and --dropout as fcnn train resolves them
    args = vars(namespace)
    defaults = TrainConfig().to_dict()
    for field, value in best.items():
        if field in args:
            assert args[field] == value, field
        elif value != defaults[field]:
            assert "no option for" in printed and f"{field}={value}" in printed, field
    assert args["val_size"] == 50000 and args["no_download"]


def test_without_matplotlib_the_tables_are_written_and_a_note_printed(
    mnist_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "fcnn.plot", None)  # import fcnn.plot fails
    assert main(search_args(mnist_dir, tmp_path, "--grid", "--no-progress")) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["search.csv", "search.json"]
    captured = capsys.readouterr()
    assert "figures need matplotlib: pip install fcnn[plot]" in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    records = json.loads((tmp_path / "search.json").read_text())["records"]
    assert [r["name"] for r in records] == [
        "lr=0.1 hidden=16 weight_decay=0",
        "lr=0.5 hidden=16 weight_decay=0",
    ]


@pytest.mark.slow  # trains on real MNIST several times
def test_momentum_has_no_train_option_so_a_note_says_so(mnist_dir, tmp_path, capsys):
    # One value per stage: a single run.
    assert (
        main(search_args(mnist_dir, tmp_path, "--momentum", "0.45", "--lr", "0.1", "--no-progress"))
        == 0
    )
    out = capsys.readouterr().out
    assert "best settings: " in out and "momentum=0.45" in out
    if "momentum" in vars(_parser().parse_args(["train"])):
        assert "--momentum 0.45" in out
    else:
        assert "note: fcnn train has no option for momentum=0.45" in out


@pytest.mark.slow
@pytest.mark.skipif(
    LocalCluster is None, reason="dask.distributed is not installed (pip install fcnn[dask])"
)
def test_search_on_an_active_dask_client(searched, mnist_dir, tmp_path, capsys):
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=False,
            protocol="tcp",
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster),
    ):
        assert main(search_args(mnist_dir, tmp_path, "--backend", "dask", "--no-progress")) == 0
    local = SearchResult.from_json(searched[1] / "search.json")
    distributed = SearchResult.from_json(tmp_path / "search.json")
    assert [r["val_accuracy"] for r in distributed.records] == [
        r["val_accuracy"] for r in local.records
    ]


def test_list_stages_names_every_stage_of_the_library(capsys):
    assert main(["search", "--list-stages", "--hidden", "16", "32x8"]) == 0
    out = capsys.readouterr().out
    for name in [*STAGE_GROUPS, *stage_names()]:
        assert f"  {name} " in out, name
    assert "hidden                         16 32x8" in out
    assert "further.momentum+nesterov+lr   0,False,0.5 " in out


def test_hidden_candidates_are_space_separated_and_layers_joined_by_x():
    args = _parser().parse_args(["search", "--hidden", "16", "32x8"])
    assert args.hidden == [(16,), (32, 8)]
    assert _parser().parse_args(["train", "--hidden", "32", "8"]).hidden == [32, 8]


def test_a_comma_list_of_hidden_sizes_gets_a_hint(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--hidden", "256,128"])
    assert exit_info.value.code == 2
    assert "--hidden 256 256x128 (two candidates)" in capsys.readouterr().err


def test_library_stages_run_by_name_from_a_base_file(searched, mnist_dir, tmp_path, capsys):
    """The library's further stages from the command line, on top of an earlier search."""
    first = SearchResult.from_json(searched[1] / "search.json")
    flags = ["--stages", "further.lr_decay", "--base", str(searched[1] / "search.json")]
    assert main(search_args(mnist_dir, tmp_path, *flags, "--no-progress")) == 0
    result = SearchResult.from_json(tmp_path / "search.json")
    assert result.stages == ["lr_decay"]
    assert [r["name"] for r in result.records] == ["lr_decay=0.3", "lr_decay=0.5", "lr_decay=0.8"]
    for record in result.records:
        # Every setting but the searched one is the earlier search's best.
        assert {**record["params"], "lr_decay": first.best_params["lr_decay"]} == {
            **first.best_params,
            "epochs": 1,
        }
    out = capsys.readouterr().out
    assert f"best settings: lr_decay={result.best_params['lr_decay']}" in out
    assert "--lr-decay" in out


def test_repeats_train_each_candidate_with_consecutive_seeds(mnist_dir, tmp_path, capsys):
    flags = ["--stages", "original.lr", "--seed", "3", "--repeats", "2", "--n-jobs", "2"]
    assert main(search_args(mnist_dir, tmp_path, *flags)) == 0
    result = SearchResult.from_json(tmp_path / "search.json")
    for record in result.records:
        assert record["seeds"] == [3, 4] and record["params"]["seed"] == 3
        accuracies = record["val_accuracies"]
        assert len(set(accuracies)) == 2 and record["val_accuracy"] == sum(accuracies) / 2
    out = capsys.readouterr().out
    # A line per candidate and the stage's winner.
    assert out.count("(mean of 2 seeds, ") == len(result.records) + 1 == 5
    # The split is the seed's, so the command to train the winner keeps --seed 3.
    assert "--seed 3" in next(line for line in out.splitlines() if line.startswith("train them"))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--stages", "further.nothing"], "--stages: unknown stage 'further.nothing'; known: lr,"),
        (["--stages", "lr", "--momentum", "0.9"], "--stages does not name momentum"),
        (["--stages", "momentum"], "--stages momentum needs --momentum values"),
        (["--base", "no-such-file.json"], "cannot read --base no-such-file.json"),
    ],
)
def test_bad_stages_or_base_fail_before_loading_data(flags, message, tmp_path, capsys):
    status = main(["search", "--data-dir", str(tmp_path), "--no-download", *flags])
    assert status in (1, 2)
    assert message in capsys.readouterr().err


def test_a_base_file_with_unknown_settings_exits_2(tmp_path, capsys):
    (tmp_path / "base.json").write_text('{"hidden": [16], "learning_rate": 0.1}')
    assert main(["search", "--base", str(tmp_path / "base.json")]) == 2
    assert "unknown training settings ['learning_rate']" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags",
    [
        ["--epochs", "0"],
        ["--hidden", "abc"],
        ["--hidden", "16,0"],
        ["--hidden", "16x0"],
        ["--lr"],
        ["--n-jobs", "two"],
        ["--repeats", "0"],
        ["--no-such-flag"],
    ],
)
def test_bad_flags_exit_2(flags, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["search", *flags])
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--lr", "-0.1"], "candidate lr=-0.1: initial_lr must be finite"),
        (["--n-jobs", "0"], "n_jobs must be a non-zero integer"),
        (["--backend", "no-such-backend"], "Invalid backend"),
        (["--val-size", "60000"], "val_size must be in [1, 59999]"),
        (["--hidden", "16", "100000000"], "--hidden 100000000: the net would need"),
    ],
)
def test_bad_settings_exit_2_with_one_line(flags, message, mnist_dir, tmp_path, capsys):
    assert main(search_args(mnist_dir, tmp_path, *flags, "--no-progress")) == 2
    err = capsys.readouterr().err
    assert err.startswith("fcnn search: error: ") and message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "search.json").exists()


def test_missing_data_exits_1(tmp_path, capsys):
    assert (
        main(
            ["search", "--data-dir", str(tmp_path), "--no-download", "--out", str(tmp_path / "out")]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.startswith("fcnn search: error: ") and "--data-dir" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_out_naming_a_file_exits_1(mnist_dir, tmp_path, capsys):
    (tmp_path / "taken").write_text("a file")
    assert main(search_args(mnist_dir, tmp_path / "taken", "--no-progress")) == 1
    err = capsys.readouterr().err
    assert "--out" in err and "is a file" in err and len(err.strip().splitlines()) == 1
