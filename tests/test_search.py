"""fcnn.search: stage-by-stage selection on validation data, grid search, parallel runs
(local processes, a Dask cluster, a Ray cluster) giving the same records, thread limits,
exports."""

import csv
import inspect
import math
import os

import numpy as np
import pytest
from synthetic import blobs

from fcnn.search import (
    ORIGINAL_STAGES,
    SearchError,
    SearchResult,
    _select,
    grid_search,
    sequential_search,
    worker_threads,
)
from fcnn.training import DivergenceError, fit

try:
    from dask.distributed import Client, LocalCluster
except ImportError:  # pragma: no cover - depends on the environment
    LocalCluster = None
try:
    import ray
except ImportError:  # pragma: no cover - depends on the environment
    ray = None


IMAGES, LABELS = blobs()
TRAIN = (IMAGES[:400], LABELS[:400])
VAL = (IMAGES[400:], LABELS[400:])
TINY_STAGES = [("lr", [0.01, 0.5]), ("hidden", [4, 8]), ("weight_decay", [1e-3, 0.0])]


def without_timings(records):
    """Records minus what depends on the clock."""
    return [
        {
            **{k: v for k, v in record.items() if k != "seconds"},
            "history": {k: v for k, v in record["history"].items() if k != "epoch_time"},
        }
        for record in records
    ]


# ----------------------------------------------------------------------------
# a fake trainer whose validation figures are chosen, so selection is tested exactly

CALLS = []
# (lr, hidden, weight_decay) -> val accuracy; the winners are lr=0.1, then hidden=256 at
# lr=0.1, then weight_decay=1e-4 at lr=0.1 and hidden=256. hidden=512 would win at lr=0.5:
# picking it would mean stage 2 did not start from stage 1's best.
SCORES = {
    (0.001, 64, 0.0): 0.50,
    (0.01, 64, 0.0): 0.80,
    (0.1, 64, 0.0): 0.90,
    (0.5, 64, 0.0): 0.85,
    (0.1, 128, 0.0): 0.91,
    (0.1, 256, 0.0): 0.93,
    (0.1, 512, 0.0): 0.92,
    (0.1, 1024, 0.0): 0.90,
    (0.5, 512, 0.0): 0.99,
    (0.1, 256, 1e-3): 0.92,
    (0.1, 256, 1e-4): 0.94,
    (0.1, 256, 1e-5): 0.93,
}


def scored_fit(config, train_data, val_data=None, num_classes=None, progress=True, **extra):
    """A trainer whose final val accuracy comes from SCORES; records how it was called."""
    CALLS.append(
        {"config": config, "extra": extra, "progress": progress, "val_size": val_data[1].shape[0]}
    )
    accuracy = SCORES.get((config.lr, config.hidden[0], config.weight_decay), 0.1)
    history = {
        "epoch": [1, 2],
        "train_loss": [1.0, 0.5],
        "train_accuracy": [0.5, accuracy],
        "val_loss": [1.0, 1.0 - accuracy],
        "val_accuracy": [0.4, accuracy],
        "lr": [config.lr, config.lr],
        "epoch_time": [0.0, 0.0],
    }
    return None, None, history


def diverging_fit(config, train_data, val_data=None, num_classes=None, progress=True):
    if config.lr >= 0.5:
        raise DivergenceError("training diverged at epoch 1, step 3: the loss is nan")
    return scored_fit(config, train_data, val_data, num_classes, progress)


def threads_fit(config, train_data, val_data=None, num_classes=None, progress=True):
    """Trains for real and notes the BLAS threads it was allowed, as seen inside the worker."""
    from threadpoolctl import threadpool_info

    net, optimizer, history = fit(
        config, train_data, val_data, num_classes=num_classes, progress=progress
    )
    history["blas_threads"] = [
        pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"
    ]
    history["pid"] = os.getpid()
    return net, optimizer, history


def interrupted_fit(config, train_data, val_data=None, num_classes=None, progress=True):
    _, _, history = scored_fit(config, train_data, val_data, num_classes, progress)
    return None, None, {**history, "interrupted": True}


@pytest.fixture
def calls():
    CALLS.clear()
    yield CALLS
    CALLS.clear()


def test_sequential_search_picks_each_stage_best_and_carries_it_forward(calls):
    result = sequential_search(TRAIN, VAL, ORIGINAL_STAGES, train_fn=scored_fit, progress=False)
    trained = [(c["config"].lr, c["config"].hidden, c["config"].weight_decay) for c in calls]
    # stage 1 on the base settings; stage 2 at lr=0.1; stage 3 at lr=0.1, hidden=256.
    assert trained == [
        (0.001, (64,), 0.0),
        (0.01, (64,), 0.0),
        (0.1, (64,), 0.0),
        (0.5, (64,), 0.0),
        (0.1, (128,), 0.0),
        (0.1, (256,), 0.0),
        (0.1, (512,), 0.0),
        (0.1, (1024,), 0.0),
        (0.1, (256,), 1e-3),
        (0.1, (256,), 1e-4),
        (0.1, (256,), 1e-5),
    ]
    assert all(c["config"].epochs == 10 and c["progress"] is False for c in calls)
    assert [r["stage"] for r in result.records] == ["lr"] * 4 + ["hidden"] * 5 + [
        "weight_decay"
    ] * 4
    assert len(result.records) == 13
    # hidden=64 and weight_decay=0 repeat the previous stage's winner: copied, not retrained.
    reused = [r["name"] for r in result.records if r["reused"]]
    assert reused == ["hidden=64", "weight_decay=0"]
    assert {name: r["name"] for name, r in result.stage_best().items()} == {
        "lr": "lr=0.1",
        "hidden": "hidden=256",
        "weight_decay": "weight_decay=0.0001",
    }
    assert result.best_record["name"] == "weight_decay=0.0001"
    assert result.best_record["val_accuracy"] == 0.94
    assert result.best_params["lr"] == 0.1 and result.best_params["hidden"] == [256]
    assert result.best_params["weight_decay"] == 1e-4
    assert result.best_config.hidden == (256,)
    assert result.records[0]["params"]["hidden"] == [64]
    assert result.records[0]["name"] == "lr=0.001"


def test_search_functions_take_no_test_data(calls):
    for function in (sequential_search, grid_search):
        assert not [name for name in inspect.signature(function).parameters if "test" in name]
    sequential_search(TRAIN, VAL, TINY_STAGES, train_fn=scored_fit, progress=False)
    assert calls and all(c["extra"] == {} and c["val_size"] == 200 for c in calls)
    # The real trainer: no test figures in any history.
    result = grid_search(TRAIN, VAL, {"lr": [0.5]}, epochs=1, progress=False)
    assert not [key for key in result.records[0]["history"] if key.startswith("test")]


def test_ties_go_to_lower_val_loss_then_to_the_earlier_value():
    assert (
        _select([{"val_accuracy": 0.9, "val_loss": 0.3}, {"val_accuracy": 0.9, "val_loss": 0.2}])
        == 1
    )
    assert (
        _select([{"val_accuracy": 0.9, "val_loss": 0.2}, {"val_accuracy": 0.9, "val_loss": 0.2}])
        == 0
    )
    assert (
        _select(
            [
                {"val_accuracy": math.nan, "val_loss": math.nan},
                {"val_accuracy": 0.1, "val_loss": 2.0},
            ]
        )
        == 1
    )


# (lr, seed) -> val accuracy: one lucky seed makes lr=0.1 look best, the mean picks lr=0.2.
SEEDED_SCORES = {(0.1, 5): 0.90, (0.1, 6): 0.80, (0.2, 5): 0.86, (0.2, 6): 0.87}


def seeded_fit(config, train_data, val_data=None, num_classes=None, progress=True):
    """A trainer whose val figures depend on the learning rate and the seed."""
    CALLS.append({"lr": config.lr, "seed": config.seed})
    if (config.lr, config.seed) == (0.3, 6):
        raise DivergenceError("training diverged at epoch 1, step 2: the loss is inf")
    accuracy = SEEDED_SCORES.get((config.lr, config.seed), 0.5)
    history = {
        "epoch": [1],
        "train_loss": [1.0],
        "train_accuracy": [accuracy],
        "val_loss": [1.0 - accuracy],
        "val_accuracy": [accuracy],
        "lr": [config.lr],
        "epoch_time": [0.0],
        "seed": config.seed,
    }
    return None, None, history


def test_repeats_compare_the_means_over_consecutive_seeds(calls):
    stages = [("lr", [0.1, 0.2])]
    once = sequential_search(TRAIN, VAL, stages, {"seed": 5}, train_fn=seeded_fit, progress=False)
    assert once.best_params["lr"] == 0.1 and [c["seed"] for c in calls] == [5, 5]
    assert once.records[0]["seeds"] == [5] and once.records[0]["val_accuracies"] == [0.9]
    calls.clear()
    twice = sequential_search(
        TRAIN, VAL, stages, {"seed": 5}, train_fn=seeded_fit, progress=False, repeats=2
    )
    assert sorted((c["lr"], c["seed"]) for c in calls) == [(0.1, 5), (0.1, 6), (0.2, 5), (0.2, 6)]
    assert twice.best_params["lr"] == 0.2
    first, second = twice.records
    assert first["seeds"] == [5, 6] and first["val_accuracies"] == [0.90, 0.80]
    assert first["val_accuracy"] == pytest.approx(0.85, abs=1e-15)
    assert second["val_accuracy"] == pytest.approx(0.865, abs=1e-15)
    assert second["val_loss"] == pytest.approx(0.135, abs=1e-15)
    # The record keeps the first seed's history and the seed the settings start from.
    assert first["history"]["seed"] == 5 and first["params"]["seed"] == 5


def test_one_diverged_seed_rules_its_candidate_out(calls):
    result = grid_search(
        TRAIN,
        VAL,
        {"lr": [0.3, 0.1]},
        {"seed": 5},
        train_fn=seeded_fit,
        progress=False,
        repeats=2,
    )
    diverged = result.records[0]
    assert diverged["error"].startswith("seed 6: training diverged")
    assert math.isnan(diverged["val_accuracy"]) and diverged["val_accuracies"][0] == 0.5
    assert math.isnan(diverged["val_accuracies"][1])
    assert result.best_params["lr"] == 0.1


@pytest.mark.parametrize(
    "repeats, error, match",
    [
        (0, ValueError, "repeats must be an integer >= 1, got 0"),
        (1.5, TypeError, "repeats"),
        (True, TypeError, "repeats"),
    ],
)
def test_repeats_must_be_a_positive_int(repeats, error, match):
    with pytest.raises(error, match=match):
        sequential_search(TRAIN, VAL, TINY_STAGES, train_fn=scored_fit, repeats=repeats)


def test_repeated_records_survive_json_and_csv(calls, tmp_path):
    result = grid_search(
        TRAIN, VAL, {"lr": [0.3, 0.2]}, {"seed": 5}, train_fn=seeded_fit, progress=False, repeats=2
    )
    again = SearchResult.from_json(result.to_json(tmp_path / "search.json"))
    assert again.records[1]["val_accuracies"] == [0.86, 0.87]
    assert math.isnan(again.records[0]["val_accuracies"][1])
    with open(result.to_csv(tmp_path / "search.csv"), newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert rows[1]["seeds"] == "5 6" and rows[1]["val_accuracies"] == "0.86 0.87"
    assert [float(v) for v in rows[1]["val_losses"].split()] == [1 - 0.86, 1 - 0.87]
    assert rows[0]["val_accuracies"] == "0.5 nan" and rows[1]["best"] == "1"


def test_progress_lines_give_the_spread_over_the_seeds(calls, capsys):
    grid_search(TRAIN, VAL, {"lr": [0.1]}, {"seed": 5}, train_fn=seeded_fit, repeats=2)
    assert "lr=0.1: val accuracy 85.00% (mean of 2 seeds, 80.00% to 90.00%)" in (
        capsys.readouterr().out
    )


def test_a_single_value_stage_fixes_the_setting_from_the_start(calls):
    result = sequential_search(
        TRAIN, VAL, [("lr", [0.01, 0.1]), ("hidden", [512])], train_fn=scored_fit, progress=False
    )
    assert [c["config"].hidden for c in calls] == [(512,), (512,)]
    assert result.records[-1]["reused"] and result.best_params["hidden"] == [512]


def test_diverged_candidates_are_recorded_and_never_chosen(calls):
    result = sequential_search(
        TRAIN, VAL, [("lr", [0.1, 0.5])], train_fn=diverging_fit, progress=False
    )
    diverged = result.records[1]
    assert "diverged" in diverged["error"] and math.isnan(diverged["val_accuracy"])
    assert result.best_record["name"] == "lr=0.1"
    with pytest.raises(SearchError, match="every candidate of stage 'lr' diverged"):
        sequential_search(TRAIN, VAL, [("lr", [0.5, 0.9])], train_fn=diverging_fit, progress=False)


def test_ctrl_c_in_a_candidate_stops_the_search(calls):
    with pytest.raises(KeyboardInterrupt):
        sequential_search(TRAIN, VAL, TINY_STAGES, train_fn=interrupted_fit, progress=False)
    assert len(calls) == 1


def test_any_train_config_field_can_be_a_stage(calls):
    stages = {
        "momentum": [0.5, 0.9],
        "nesterov": [False, True],
        "lr_decay": [0.5, 0.8],
        "lr_step": [100, 1000],
    }
    result = sequential_search(
        TRAIN, VAL, stages, base={"lr": 0.1, "momentum": 0.5}, train_fn=scored_fit, progress=False
    )
    assert [r["stage"] for r in result.records] == ["momentum"] * 2 + ["nesterov"] * 2 + [
        "lr_decay"
    ] * 2 + ["lr_step"] * 2
    assert [(c["config"].momentum, c["config"].nesterov) for c in calls][:2] == [
        (0.5, False),
        (0.9, False),
    ]
    assert all(r["params"]["lr"] == 0.1 for r in result.records)


def test_linked_settings_change_together(calls):
    """A stage over (lr, hidden) pairs: each candidate sets both; the best pair carries on."""
    stages = [
        (("lr", "hidden"), [(0.5, 64), (0.1, 256), (0.1, 512)]),
        ("weight_decay", [1e-3, 1e-4]),
    ]
    result = sequential_search(TRAIN, VAL, stages, train_fn=scored_fit, progress=False)
    assert [r["name"] for r in result.records[:3]] == [
        "lr=0.5 hidden=64",
        "lr=0.1 hidden=256",
        "lr=0.1 hidden=512",
    ]
    assert result.records[0]["stage"] == "lr+hidden"
    assert [(c["config"].lr, c["config"].hidden) for c in calls[3:]] == [
        (0.1, (256,)),
        (0.1, (256,)),
    ]
    assert result.best_params["weight_decay"] == 1e-4
    with pytest.raises(ValueError, match=r"each value of lr\+hidden must give 2 settings"):
        sequential_search(
            TRAIN, VAL, [(("lr", "hidden"), [(0.1,)])], train_fn=scored_fit, progress=False
        )
    grid = grid_search(
        TRAIN,
        VAL,
        [(("lr", "hidden"), [(0.1, 256), (0.5, 64)]), ("weight_decay", [0.0, 1e-4])],
        train_fn=scored_fit,
        progress=False,
    )
    assert len(grid.records) == 4 and grid.best_params["hidden"] == [256]


def test_bad_settings_fail_before_anything_trains(calls):
    with pytest.raises(ValueError, match="unknown setting 'learning_rate'"):
        sequential_search(TRAIN, VAL, [("learning_rate", [0.1])], train_fn=scored_fit)
    with pytest.raises(ValueError, match="non-empty list"):
        sequential_search(TRAIN, VAL, [("lr", [])], train_fn=scored_fit)
    # The bad value sits in the last stage: the first must not have trained.
    with pytest.raises(ValueError, match="candidate weight_decay=-1: .*finite and >= 0"):
        sequential_search(
            TRAIN, VAL, [("lr", [0.1, 0.5]), ("weight_decay", [0.0, -1.0])], train_fn=scored_fit
        )
    with pytest.raises(ValueError, match="candidate hidden=0"):
        grid_search(TRAIN, VAL, {"hidden": [8, 0]}, train_fn=scored_fit)
    with pytest.raises(ValueError, match="candidate nesterov=True: nesterov needs momentum"):
        sequential_search(TRAIN, VAL, {"nesterov": [False, True]}, train_fn=scored_fit)
    with pytest.raises(ValueError, match="n_jobs must be a non-zero integer"):
        grid_search(TRAIN, VAL, {"lr": [0.1]}, n_jobs=0, train_fn=scored_fit)
    with pytest.raises(ValueError, match="threads_per_worker"):
        grid_search(TRAIN, VAL, {"lr": [0.1]}, threads_per_worker=0, train_fn=scored_fit)
    with pytest.raises(ValueError, match="grid names a setting twice"):
        grid_search(TRAIN, VAL, [("lr", [0.1]), ("lr", [0.2])], train_fn=scored_fit)
    with pytest.raises(ValueError, match="num_classes must be > the largest label 2"):
        grid_search(TRAIN, VAL, {"lr": [0.1]}, num_classes=2, train_fn=scored_fit)
    with pytest.raises(TypeError, match="val_data must be a pair"):
        grid_search(TRAIN, VAL[0], {"lr": [0.1]}, train_fn=scored_fit)
    assert calls == []


def test_grid_search_covers_the_product(calls):
    grid = {"lr": np.array([0.01, 0.1, 0.5]), "hidden": [64, 256], "weight_decay": [0.0]}
    result = grid_search(TRAIN, VAL, grid, train_fn=scored_fit, progress=False)
    combos = [(r["params"]["lr"], r["params"]["hidden"][0]) for r in result.records]
    assert combos == [(lr, hidden) for lr in [0.01, 0.1, 0.5] for hidden in grid["hidden"]]
    assert all(type(r["params"]["lr"]) is float for r in result.records)
    assert len(calls) == 6 and {r["stage"] for r in result.records} == {"grid"}
    assert result.records[0]["name"] == "lr=0.01 hidden=64 weight_decay=0"
    assert result.kind == "grid" and result.best_record["name"].startswith("lr=0.1 hidden=256")
    assert result.best_record["val_accuracy"] == 0.93


def test_progress_prints_a_line_per_candidate(calls, capsys):
    sequential_search(TRAIN, VAL, TINY_STAGES, train_fn=scored_fit)
    lines = capsys.readouterr().out.splitlines()
    candidate_lines = [line for line in lines if line.startswith("[")]
    assert len(candidate_lines) == 6
    assert candidate_lines[0].startswith("[lr 1/2] lr=0.01: val accuracy")
    assert sum(line.startswith("stage ") for line in lines) == 3
    sequential_search(TRAIN, VAL, TINY_STAGES, train_fn=scored_fit, progress=False)
    assert capsys.readouterr().out == ""


# ----------------------------------------------------------------------------
# real training: the same records whatever the parallelism


@pytest.fixture(scope="module")
def serial_result():
    return sequential_search(TRAIN, VAL, TINY_STAGES, epochs=2, n_jobs=1, progress=False)


def test_real_search_learns_the_blobs(serial_result):
    assert serial_result.best_record["val_accuracy"] > 0.95
    assert serial_result.best_params["lr"] == 0.5
    assert len(serial_result.records[0]["history"]["val_accuracy"]) == 2


def test_two_workers_give_the_same_records(serial_result):
    parallel = sequential_search(TRAIN, VAL, TINY_STAGES, epochs=2, n_jobs=2, progress=False)
    assert without_timings(parallel.records) == without_timings(serial_result.records)
    assert parallel.best_index == serial_result.best_index


def test_two_workers_give_the_same_repeated_records():
    stages = [("lr", [0.1, 0.5])]
    serial = grid_search(TRAIN, VAL, stages, epochs=1, n_jobs=1, progress=False, repeats=2)
    parallel = grid_search(TRAIN, VAL, stages, epochs=1, n_jobs=2, progress=False, repeats=2)
    assert without_timings(parallel.records) == without_timings(serial.records)
    # The seeds train different nets.
    assert all(len(set(record["val_losses"])) == 2 for record in serial.records)


def test_worker_threads_keep_workers_times_threads_within_the_cores():
    assert worker_threads(1, cpu_count=8) == 8
    assert worker_threads(3, cpu_count=8) == 2
    assert worker_threads(16, cpu_count=8) == 1
    assert worker_threads(2) == max(1, (os.cpu_count() or 1) // 2)
    with pytest.raises(ValueError, match="n_workers must be >= 1"):
        worker_threads(0)


@pytest.mark.parametrize(
    "n_jobs, threads, expected",
    [
        (2, 1, 1),  # the default: one thread whatever n_jobs
        (2, "auto", worker_threads(2)),
        (1, "auto", worker_threads(1)),  # in this process: every core
    ],
)
def test_threads_are_limited_inside_the_workers(n_jobs, threads, expected):
    result = grid_search(
        TRAIN,
        VAL,
        {"lr": [0.1, 0.5]},
        epochs=1,
        n_jobs=n_jobs,
        threads_per_worker=threads,
        train_fn=threads_fit,
        progress=False,
    )
    for record in result.records:
        seen = record["history"]["blas_threads"]
        assert seen and all(count == expected for count in seen), seen
    workers = {record["history"]["pid"] for record in result.records}
    assert (os.getpid() in workers) == (n_jobs == 1)


def test_threads_of_the_threading_backend_are_limited_too():
    result = grid_search(
        TRAIN,
        VAL,
        {"lr": [0.1, 0.5]},
        epochs=1,
        n_jobs=2,
        backend="threading",
        train_fn=threads_fit,
        progress=False,
    )
    for record in result.records:
        assert set(record["history"]["blas_threads"]) == {1}


# ----------------------------------------------------------------------------
# exports


def test_json_round_trip(serial_result, tmp_path):
    path = serial_result.to_json(tmp_path / "search.json")
    again = SearchResult.from_json(path)
    assert again.records == serial_result.records
    assert again.best_index == serial_result.best_index and again.kind == "sequential"
    assert again.best_params == serial_result.best_params
    assert sorted(os.listdir(tmp_path)) == ["search.json"]  # no temporary file left
    serial_result.to_json(path)  # overwrites
    assert SearchResult.from_json(path).records == serial_result.records


def test_json_keeps_diverged_runs_as_null(calls, tmp_path):
    result = sequential_search(
        TRAIN, VAL, [("lr", [0.1, 0.5])], train_fn=diverging_fit, progress=False
    )
    path = result.to_json(tmp_path / "search.json")
    assert "NaN" not in path.read_text()
    again = SearchResult.from_json(path)
    assert math.isnan(again.records[1]["val_accuracy"]) and again.records[1]["error"]
    with pytest.raises(ValueError, match="not an fcnn search result"):
        (tmp_path / "other.json").write_text("[1, 2]")
        SearchResult.from_json(tmp_path / "other.json")


def test_csv_has_one_row_per_candidate_with_settings_and_figures(serial_result, tmp_path):
    path = serial_result.to_csv(tmp_path / "search.csv")
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == len(serial_result.records) == 6
    for row, record in zip(rows, serial_result.records, strict=True):
        assert row["name"] == record["name"] and row["stage"] == record["stage"]
        assert float(row["val_accuracy"]) == record["val_accuracy"]
        assert float(row["val_loss"]) == record["val_loss"]
        assert float(row["lr"]) == record["params"]["lr"]
        assert row["hidden"] == ",".join(map(str, record["params"]["hidden"]))
        assert float(row["train_loss"]) == record["history"]["train_loss"][-1]
        assert row["reused"] == str(int(record["reused"]))
    assert [row["best"] for row in rows].count("1") == 1
    assert rows[serial_result.best_index]["best"] == "1"
    assert sorted(os.listdir(tmp_path)) == ["search.csv"]


# ----------------------------------------------------------------------------
# a Dask cluster on this machine


@pytest.mark.slow
@pytest.mark.skipif(
    LocalCluster is None, reason="dask.distributed is not installed (pip install fcnn[dask])"
)
def test_dask_cluster_gives_the_same_records(serial_result):
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster),
    ):
        result = sequential_search(
            TRAIN, VAL, TINY_STAGES, epochs=2, backend="dask", progress=False
        )
    assert without_timings(result.records) == without_timings(serial_result.records)
    assert result.best_params == serial_result.best_params


# ----------------------------------------------------------------------------
# a Ray cluster on this machine


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    if ray is None:
        pytest.skip("Ray is not installed (pip install fcnn[ray])")
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        # Seen in .ci/sanitize on 2026-12-03: a worker died at start-up of a heap-buffer-
        # overflow that ASan found in Ray's own setproctitle (spt_setup in ray/_raylet.so),
        # and the cluster waited for it for good. fcnn's kernels get the sanitizers in every
        # other test of this run.
        pytest.skip("Ray's workers can die under AddressSanitizer in Ray's own code")
    # A small local cluster: 2 CPUs, no dashboard, a 100 MB object store; its workers
    # import this file's trainers (threads_fit) from the tests folder. Ray puts the
    # driver's working directory on its workers' sys.path: started from a source
    # checkout, they would import the unbuilt fcnn there instead of the installed one.
    tests = os.path.dirname(os.path.abspath(__file__))
    start = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("ray"))
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=100 * 1024**2,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"PYTHONPATH": tests}},
    )
    os.chdir(start)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_cluster_gives_the_same_records(ray_cluster, serial_result):
    result = sequential_search(TRAIN, VAL, TINY_STAGES, epochs=2, backend="ray", progress=False)
    assert without_timings(result.records) == without_timings(serial_result.records)
    assert result.best_params == serial_result.best_params


@pytest.mark.slow
def test_ray_runs_the_candidates_in_its_workers_with_one_blas_thread(ray_cluster):
    result = grid_search(
        TRAIN,
        VAL,
        {"lr": [0.1, 0.5]},
        epochs=1,
        backend="ray",
        train_fn=threads_fit,
        progress=False,
    )
    workers = {record["history"]["pid"] for record in result.records}
    assert os.getpid() not in workers  # n_jobs=None means the cluster, not this process
    for record in result.records:
        assert set(record["history"]["blas_threads"]) == {1}


def test_unknown_backend_is_an_error():
    with pytest.raises(ValueError, match="Invalid backend"):
        grid_search(TRAIN, VAL, {"lr": [0.1]}, backend="no-such-backend", train_fn=scored_fit)


def test_further_stages_are_valid_from_the_original_base(calls):
    """Every candidate of ORIGINAL_STAGES + FURTHER_STAGES passes the up-front checks."""
    from fcnn.search import FURTHER_STAGES

    result = sequential_search(
        TRAIN, VAL, ORIGINAL_STAGES + FURTHER_STAGES, epochs=1, train_fn=scored_fit, progress=False
    )
    assert len(result.records) == sum(len(values) for _, values in ORIGINAL_STAGES + FURTHER_STAGES)


def test_an_early_stopped_candidate_is_judged_by_its_best_epoch():
    def stopped_fit(config, train_data, val_data=None, num_classes=None, progress=True):
        history = {
            "epoch": [1, 2, 3],
            "train_loss": [1.0, 0.5, 0.4],
            "train_accuracy": [0.5, 0.8, 0.9],
            "val_loss": [0.9, 0.3, 0.6],
            "val_accuracy": [0.6, 0.9, 0.7],
            "lr": [0.1] * 3,
            "epoch_time": [0.0] * 3,
            "stop_reason": "early_stopping",
            "best_epoch": 2,
        }
        return None, None, history

    result = grid_search(TRAIN, VAL, {"early_stopping": [1]}, train_fn=stopped_fit, progress=False)
    assert result.best_record["val_accuracy"] == 0.9 and result.best_record["val_loss"] == 0.3
    assert result.best_params["early_stopping"] == 1


def test_early_stopping_is_a_setting_the_search_can_use():
    result = grid_search(TRAIN, VAL, {"early_stopping": [None, 1]}, epochs=3, progress=False)
    stopped = result.records[1]["history"]
    assert stopped["best_epoch"] in stopped["epoch"]
    at = stopped["epoch"].index(stopped["best_epoch"])
    assert result.records[1]["val_accuracy"] == stopped["val_accuracy"][at]
