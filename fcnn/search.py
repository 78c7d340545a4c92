"""Hyper-parameter search: the original project's sequential search and a grid search.

Both pick settings on the **validation** set only (the final epoch's
``val_accuracy``); neither function accepts test data. The candidates of a
stage (or of the whole grid) run in parallel through joblib, so the same search
runs on the local cores (``n_jobs``), on a Dask cluster (``backend="dask"``
with a ``dask.distributed.Client`` active) or on Ray (``backend="ray"``).

Every candidate trains with a fixed number of BLAS threads (1 by default),
whatever the number of workers: OpenBLAS sums in another order with another
thread count, so a thread count that followed ``n_jobs`` would make the
results, and perhaps the choice, depend on ``n_jobs``.

A *record* is one trained candidate::

    {"name": "lr=0.1", "stage": "lr", "params": {... every TrainConfig field ...},
     "history": {... as fcnn.training.train returns it ...},
     "val_accuracy": 0.97, "val_loss": 0.1, "seconds": 12.3,
     "reused": False, "error": None,
     "seeds": [0], "val_accuracies": [0.97], "val_losses": [0.1]}

With ``repeats=R`` a candidate trains R times, with seeds ``seed``, ``seed + 1``,
..., on the same split: ``val_accuracy`` and ``val_loss`` are then the means over
the seeds (each seed's figures are in ``val_accuracies`` and ``val_losses``),
``seconds`` is the sum, and ``history`` is the first seed's.

``reused`` marks a candidate whose settings equal an earlier one's in the same
search: it is not trained again (training is seeded, so it would give the same
history) and its record copies the earlier one. ``error`` holds the message of
a run that diverged; its figures are NaN and it is never selected.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ._checks import check_int, check_n_jobs, check_threads
from ._io import write_text_atomically
from .augmentation import LITERATURE, Augmentation
from .dataloader import DataLoader
from .training import DivergenceError, History, TrainConfig, build_model, build_optimizer, fit

__all__ = [
    "ORIGINAL_BASE",
    "ORIGINAL_STAGES",
    "FURTHER_STAGES",
    "FINAL_STAGES",
    "AUGMENT_STAGES",
    "STAGE_GROUPS",
    "SearchError",
    "SearchResult",
    "grid_search",
    "sequential_search",
    "stage_names",
    "stages_by_name",
    "worker_threads",
]

PathLike = str | os.PathLike
Data = tuple[np.ndarray, np.ndarray]
#: ``[(field, values), ...]`` or ``{field: values}``: a TrainConfig field and its candidates.
#: A stage's setting: a TrainConfig field, or a tuple of fields changed together
#: (linked), whose values are then tuples, e.g. (("momentum", "lr"), [(0, 0.5), (0.9, 0.05)]).
Field = str | tuple[str, ...]
Stages = Mapping[str, Sequence[Any]] | Sequence[tuple[Field, Sequence[Any]]]
#: Called as ``train_fn(config, train_data, val_data=..., num_classes=..., progress=False)``;
#: returns ``(net, optimizer, history)`` as :func:`fcnn.training.fit` does.
TrainFn = Callable[..., tuple[Any, Any, History]]

#: The original project's stages: the initial learning rate, then the hidden
#: size, then the weight decay (0 = none), each from the best settings so far.
ORIGINAL_STAGES: tuple[tuple[str, tuple[Any, ...]], ...] = (
    ("lr", (1e-3, 1e-2, 1e-1, 0.5)),
    ("hidden", (64, 128, 256, 512, 1024)),
    ("weight_decay", (1e-3, 1e-4, 1e-5, 0.0)),
)
#: What fcnn searches after the original's stages: the schedule's stage length T
#: (steps) and factor alpha; then momentum, Nesterov and the learning rate together
#: (momentum m multiplies the step by about 1 / (1 - m), so a rate good without momentum
#: diverges with it, and Nesterov needs momentum: they are searched as linked triples);
#: the weight decay comes last, in FINAL_STAGES.
FURTHER_STAGES: tuple[tuple[Field, tuple[Any, ...]], ...] = (
    ("lr_step", (500, 2000, 5000, 10000)),
    ("lr_decay", (0.3, 0.5, 0.8)),
    (
        ("momentum", "nesterov", "lr"),
        (
            (0.0, False, 0.5),
            (0.0, False, 0.1),
            (0.9, False, 0.05),
            (0.9, True, 0.05),
            (0.9, True, 0.1),
            (0.9, True, 0.01),
        ),
    ),
)
#: The last stage, run with as many epochs as the final training (30): weight decay is a
#: regulariser, and what it buys shows in long runs only (at 10 epochs none wins).
FINAL_STAGES: tuple[tuple[Field, tuple[Any, ...]], ...] = (
    ("weight_decay", (0.0, 1e-4, 5e-4, 1e-3)),
)
#: The settings the original search starts from: one hidden layer of 64, no weight
#: decay, plain SGD (no momentum), the original's schedule (alpha 0.5 every T = 500
#: steps, staircase as its formula says), 10 epochs. Every field is spelled out so that
#: new TrainConfig defaults leave it be. With T = 500 the rate is below 1% of its start
#: after four epochs: searching alpha and T too (see FURTHER_STAGES) is what fixes that.
ORIGINAL_BASE = TrainConfig(
    hidden=(64,),
    lr=0.1,
    lr_decay=0.5,
    lr_step=500,
    staircase=True,
    weight_decay=0.0,
    momentum=0.0,
    nesterov=False,
    epochs=10,
    batch_size=64,
    seed=0,
    dtype="float32",
    init="kaiming",
)

#: fcnn's stages for accuracy beyond the plain net's, run from ``fcnn train``'s defaults:
#: how strongly to warp the training images (none, half, all and 1.5 times
#: :data:`fcnn.augmentation.LITERATURE`'s strengths), then dropout after the hidden layer,
#: the hidden size, the schedule's factor alpha (per stage of T = 5,000 steps), and last the
#: number of epochs, which augmentation lengthens (each warp is seen once, so a longer run
#: does not overfit the way the plain one does).
AUGMENT_STAGES: tuple[tuple[Field, tuple[Any, ...]], ...] = (
    ("augment", (Augmentation(), LITERATURE.scaled(0.5), LITERATURE, LITERATURE.scaled(1.5))),
    ("dropout", (0.0, 0.1, 0.25)),
    ("hidden", (1024, 2048)),
    ("lr_decay", (0.5, 0.8, 0.9)),
    ("epochs", (30, 60, 100)),
)

_FIELDS = tuple(f.name for f in fields(TrainConfig))

#: Every group of stages the library defines, by the name ``fcnn search --stages`` takes.
STAGE_GROUPS: dict[str, tuple[tuple[Field, tuple[Any, ...]], ...]] = {
    "original": ORIGINAL_STAGES,
    "further": FURTHER_STAGES,
    "final": FINAL_STAGES,
    "augment": AUGMENT_STAGES,
}


class SearchError(RuntimeError):
    """A search could not choose: every candidate of a stage diverged."""


# ----------------------------------------------------------------------------
# results


def _select(records: Sequence[Mapping[str, Any]]) -> int | None:
    """Index of the best record: highest val accuracy, then lowest val loss, then first
    (with repeats, the means over the seeds)."""
    best = None
    for index, record in enumerate(records):
        accuracy, loss = record["val_accuracy"], record["val_loss"]
        if not math.isfinite(accuracy):
            continue
        key = (accuracy, -loss if math.isfinite(loss) else -math.inf)
        if best is None or key > best[0]:
            best = (key, index)
    return None if best is None else best[1]


def _plain(value: Any) -> Any:
    """``value`` as JSON can hold it: NumPy scalars and arrays unwrapped, NaN/inf as None."""
    if isinstance(value, Augmentation):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_value(value: Any, exact: bool = False) -> str:
    """A setting as candidate names and ``fcnn search`` write it.

    ``256x128`` for layer sizes (as ``fcnn search --hidden`` takes them); floats
    shortened (``1e-05``) unless ``exact``.
    """
    if isinstance(value, Augmentation):
        return value.label()
    if isinstance(value, (tuple, list)):
        return "x".join(format_value(item) for item in value)
    if isinstance(value, float) and not exact:
        return f"{value:g}"
    return str(value)


@dataclass
class SearchResult:
    """The records of a search and the settings it chose.

    Attributes
    ----------
    records
        one dict per candidate (see the module docstring), in the order
        of the stages and of each stage's values.
    best_index
        index in ``records`` of the chosen candidate: the winner of
        the last stage for a sequential search, of the whole grid for a
        grid search.
    kind
        ``"sequential"`` or ``"grid"``.

    Examples
    --------
    >>> result = sequential_search(train_data, val_data, n_jobs=2)
    >>> result.best_params["lr"], result.best_record["val_accuracy"]
    >>> result.to_csv("search.csv"); result.to_json("search.json")
    """

    records: list[dict[str, Any]]
    best_index: int
    kind: str = "sequential"

    @property
    def best_record(self) -> dict[str, Any]:
        """The chosen candidate's record."""
        return self.records[self.best_index]

    @property
    def best_params(self) -> dict[str, Any]:
        """Every training setting of the chosen candidate, as ``TrainConfig.to_dict()``."""
        return dict(self.best_record["params"])

    @property
    def best_config(self) -> TrainConfig:
        """The chosen settings as a :class:`~fcnn.training.TrainConfig`."""
        return TrainConfig.from_dict(self.best_params)

    @property
    def stages(self) -> list[str]:
        """The stage names, in the order they ran."""
        return list(dict.fromkeys(record["stage"] for record in self.records))

    def stage_records(self, stage: str) -> list[dict[str, Any]]:
        """The records of one stage, in the order of its values."""
        return [record for record in self.records if record["stage"] == stage]

    def stage_best(self) -> dict[str, dict[str, Any]]:
        """``{stage: the record that won it}``, for stages where a candidate did not diverge."""
        winners = {}
        for stage in self.stages:
            records = self.stage_records(stage)
            index = _select(records)
            if index is not None:
                winners[stage] = records[index]
        return winners

    def to_json(self, path: PathLike) -> Path:
        """Writes everything, histories included, as JSON (NaN as null), atomically.

        Returns
        -------
        Path
            The path written.
        """
        path = Path(path)
        document = {
            "kind": self.kind,
            "best_index": self.best_index,
            "best_params": self.best_params,
            "records": self.records,
        }
        write_text_atomically(path, json.dumps(_plain(document), indent=1, allow_nan=False))
        return path

    @classmethod
    def from_json(cls, path: PathLike) -> SearchResult:
        """Reads a result written by :meth:`to_json`.

        Raises
        ------
        OSError
            the file cannot be read.
        ValueError
            the file is not a search result.
        """
        path = Path(path)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            records = document["records"]
            best_index = int(document["best_index"])
            kind = str(document["kind"])
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path} is not an fcnn search result: {error}") from None
        for record in records:
            for key in ("val_accuracy", "val_loss"):
                if record.get(key) is None:
                    record[key] = math.nan
            for key in ("val_accuracies", "val_losses"):
                if key in record:
                    record[key] = [math.nan if v is None else v for v in record[key]]
        return cls(records=records, best_index=best_index, kind=kind)

    def to_csv(self, path: PathLike) -> Path:
        """Writes one row per candidate: its settings and final figures, atomically.

        Columns: ``name, stage``, every TrainConfig field (``hidden`` as
        ``"256x128"``), ``val_accuracy, val_loss, train_accuracy, train_loss``
        of the last epoch (the first seed's), ``seconds, reused, error``, ``seeds``
        (space-separated), ``val_accuracies, val_losses`` (one per seed, space-separated)
        and ``best`` (1 on the chosen row).

        Returns
        -------
        Path
            The path written.
        """
        path = Path(path)
        columns = [
            "name",
            "stage",
            *_FIELDS,
            "val_accuracy",
            "val_loss",
            "train_accuracy",
            "train_loss",
            "seconds",
            "reused",
            "error",
            "seeds",
            "val_accuracies",
            "val_losses",
            "best",
        ]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for index, record in enumerate(self.records):
            history = record["history"]
            row = {"name": record["name"], "stage": record["stage"]}
            row.update({name: format_value(record["params"][name], exact=True) for name in _FIELDS})
            for key in ("val_accuracy", "val_loss"):
                row[key] = repr(float(record[key]))
            for key in ("train_accuracy", "train_loss"):
                row[key] = repr(float(history[key][-1])) if history.get(key) else ""
            row.update(
                seconds=f"{record['seconds']:.3f}",
                reused=int(record.get("reused", False)),
                error=record.get("error") or "",
                seeds=" ".join(str(seed) for seed in record.get("seeds", ())),
                val_accuracies=" ".join(repr(float(v)) for v in record.get("val_accuracies", ())),
                val_losses=" ".join(repr(float(v)) for v in record.get("val_losses", ())),
                best=int(index == self.best_index),
            )
            writer.writerow(row)
        write_text_atomically(path, buffer.getvalue())
        return path


# ----------------------------------------------------------------------------
# running candidates


def worker_threads(n_workers: int, cpu_count: int | None = None) -> int:
    """BLAS/OpenMP threads per worker so that ``n_workers`` x threads <= cores (at least 1).

    Parameters
    ----------
    n_workers : int
        workers running at the same time on this machine (>= 1).
    cpu_count : int | None
        cores; ``os.cpu_count()`` when None.

    Returns
    -------
    int
        ``max(1, cpu_count // n_workers)``.

    Raises
    ------
    ValueError
        ``n_workers`` < 1.

    Examples
    --------
    >>> worker_threads(3, cpu_count=8)
    2
    """
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    return max(1, cores // n_workers)


def _train_candidate(
    train_fn: TrainFn,
    settings: dict[str, Any],
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    num_classes: int,
    threads: int | None,
) -> tuple[History, float, str | None]:
    """One candidate, in a worker: ``(history, seconds, error message or None)``.

    The arrays come one by one, not as pairs: joblib's Dask backend sends a large
    array to the cluster once per stage, but a tuple of arrays with every task.
    """
    train_data, val_data = (train_images, train_labels), (val_images, val_labels)

    config = TrainConfig.from_dict(settings)
    started = time.perf_counter()
    error = None
    with _thread_limit(threads):
        try:
            _, _, history = train_fn(
                config, train_data, val_data=val_data, num_classes=num_classes, progress=False
            )
        except DivergenceError as exc:
            history, error = {}, str(exc)
    seconds = time.perf_counter() - started
    if history.get("interrupted"):
        # Ctrl-C reached the training loop (n_jobs=1): stop the search, not just this run.
        raise KeyboardInterrupt
    return history, seconds, error


def _joblib_backend(backend: str | None) -> contextlib.AbstractContextManager:
    """``joblib.parallel_config(backend=...)``, with Ray registered and install hints."""
    import joblib

    if backend is None:
        return contextlib.nullcontext()
    if backend == "ray":
        try:
            from ray.util.joblib import register_ray
        except ImportError:
            raise ImportError("backend 'ray' needs Ray: pip install fcnn[ray]") from None
        register_ray()
        # Ray's backend, unlike Dask's, defaults to n_jobs=1, which runs everything in this
        # process: ask for the whole cluster unless the caller gives n_jobs.
        return joblib.parallel_config(backend=backend, n_jobs=-1)
    try:
        return joblib.parallel_config(backend=backend)
    except ImportError:
        raise ImportError(f"backend {backend!r} needs Dask: pip install fcnn[dask]") from None


@dataclass
class _Runner:
    """What every stage shares: the data, the trainer, the parallelism, the reuse cache."""

    train_data: Data
    val_data: Data
    num_classes: int
    train_fn: TrainFn
    n_jobs: int | None
    backend: str | None
    threads_per_worker: int | Literal["auto"] | None
    progress: bool
    repeats: int = 1

    def __post_init__(self) -> None:
        self.finished: dict[str, dict[str, Any]] = {}  # settings as JSON -> record

    def run(self, stage: str, candidates: list[tuple[str, TrainConfig]]) -> list[dict[str, Any]]:
        """Trains the candidates of one stage (those not run before), in parallel."""
        from joblib import Parallel, delayed, effective_n_jobs

        keys = [json.dumps(config.to_dict(), sort_keys=True) for _, config in candidates]
        # One run per distinct new setting; the others copy an earlier record.
        pending = [
            index
            for index, key in enumerate(keys)
            if key not in self.finished and key not in keys[:index]
        ]
        records: list[dict[str, Any] | None] = [None] * len(candidates)
        done = 0

        def report(record: dict[str, Any]) -> None:
            nonlocal done
            done += 1
            if self.progress:
                print(f"[{stage} {done}/{len(candidates)}] {_describe(record)}", flush=True)

        for index, key in enumerate(keys):
            if index not in pending and key in self.finished:
                records[index] = self._copy(self.finished[key], candidates[index][0], stage)
                report(records[index])
        with _joblib_backend(self.backend):
            try:
                parallel = Parallel(n_jobs=self.n_jobs, return_as="generator_unordered")
            except ValueError:
                # Ray's joblib backend returns lists only: each result is tagged with its
                # index, so the order does not matter, but a stage's records (and progress
                # lines) then come when the whole stage is done.
                parallel = Parallel(n_jobs=self.n_jobs, return_as="list")
            runs = [(index, repeat) for index in pending for repeat in range(self.repeats)]
            threads = self.threads_per_worker
            if threads == "auto":
                threads = worker_threads(min(effective_n_jobs(parallel.n_jobs), max(1, len(runs))))
            jobs = (
                delayed(_tagged)(
                    (index, repeat),
                    self.train_fn,
                    {**candidates[index][1].to_dict(), "seed": candidates[index][1].seed + repeat},
                    *self.train_data,
                    *self.val_data,
                    self.num_classes,
                    threads,
                )
                for index, repeat in runs
            )
            # A candidate's seeds may finish in any order and among other candidates' runs.
            results: dict[int, dict[int, tuple[History, float, str | None]]] = {}
            # The same limit here too: workers that are threads of this process (n_jobs=1,
            # the threading backend) share its thread pools, and one that finishes restores
            # the limit it found, which must be this one.
            with _thread_limit(threads):
                for (index, repeat), result in parallel(jobs) if runs else ():
                    results.setdefault(index, {})[repeat] = result
                    if len(results[index]) < self.repeats:
                        continue
                    name, config = candidates[index]
                    by_seed = [run for _, run in sorted(results.pop(index).items())]
                    records[index] = self.finished[keys[index]] = _record(
                        name, stage, config, by_seed
                    )
                    report(records[index])
        for index, key in enumerate(keys):
            if records[index] is None:  # a duplicate within this stage
                records[index] = self._copy(self.finished[key], candidates[index][0], stage)
                report(records[index])
        return records  # type: ignore[return-value]

    @staticmethod
    def _copy(record: dict[str, Any], name: str, stage: str) -> dict[str, Any]:
        return {**copy.deepcopy(record), "name": name, "stage": stage, "reused": True}


def _thread_limit(threads: int | None) -> contextlib.AbstractContextManager:
    """``threadpool_limits(threads)`` on every BLAS and OpenMP pool; no limit for None."""
    from threadpoolctl import threadpool_limits

    return contextlib.nullcontext() if threads is None else threadpool_limits(limits=threads)


def _tagged(tag: Any, *args: Any) -> tuple[Any, tuple[History, float, str | None]]:
    """Runs :func:`_train_candidate` and returns its result with ``tag`` (candidate, seed)."""
    return tag, _train_candidate(*args)


def _final_figures(name: str, history: History) -> tuple[float, float]:
    """``(val accuracy, val loss)`` of the net a run ends with."""
    if not history.get("val_accuracy") or not history.get("val_loss"):
        raise ValueError(
            f"candidate {name}: the trainer returned a history without "
            f"val_accuracy/val_loss; got keys {sorted(history)}"
        )
    # With early stopping the net ends at its best epoch, not its last.
    at = history["epoch"].index(history["best_epoch"]) if history.get("best_epoch") else -1
    return float(history["val_accuracy"][at]), float(history["val_loss"][at])


def _record(
    name: str,
    stage: str,
    config: TrainConfig,
    runs: Sequence[tuple[History, float, str | None]],
) -> dict[str, Any]:
    """One candidate's record from its runs, one per seed (``config.seed``, + 1, ...)."""
    seeds = [config.seed + repeat for repeat in range(len(runs))]
    failed = [
        (seed, error) for seed, (_, _, error) in zip(seeds, runs, strict=True) if error is not None
    ]
    figures = [
        (math.nan, math.nan) if error is not None else _final_figures(name, history)
        for history, _, error in runs
    ]
    if failed:
        # One diverged seed rules the candidate out: its settings are not safe.
        seed, message = failed[0]
        error = message if len(runs) == 1 else f"seed {seed}: {message}"
        val_accuracy = val_loss = math.nan
    else:
        error = None
        val_accuracy = math.fsum(a for a, _ in figures) / len(runs)
        val_loss = math.fsum(loss for _, loss in figures) / len(runs)
    return {
        "name": name,
        "stage": stage,
        "params": config.to_dict(),
        "history": runs[0][0],
        "val_accuracy": val_accuracy,
        "val_loss": val_loss,
        "seconds": math.fsum(seconds for _, seconds, _ in runs),
        "reused": False,
        "error": error,
        "seeds": seeds,
        "val_accuracies": [a for a, _ in figures],
        "val_losses": [loss for _, loss in figures],
    }


def _describe(record: Mapping[str, Any]) -> str:
    if record["error"] is not None:
        return f"{record['name']}: diverged ({record['error']})"
    accuracies = record.get("val_accuracies", ())
    spread = (
        f" (mean of {len(accuracies)} seeds, {min(accuracies):.2%} to {max(accuracies):.2%})"
        if len(accuracies) > 1
        else ""
    )
    text = (
        f"{record['name']}: val accuracy {record['val_accuracy']:.2%}{spread}, "
        f"val loss {record['val_loss']:.4f}, {record['seconds']:.1f}s"
    )
    return text + " (reused)" if record["reused"] else text


# ----------------------------------------------------------------------------
# checking the settings before anything trains


def _stage_list(stages: Stages, what: str) -> list[tuple[Field, list[Any]]]:
    items = list(stages.items()) if isinstance(stages, Mapping) else list(stages)
    if not items:
        raise ValueError(f"{what} must name at least one setting, got none")
    result = []
    for item in items:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise TypeError(f"{what} must be (field, values) pairs, got {item!r}")
        field, values = item
        if isinstance(values, np.ndarray):
            values = values.tolist()
        linked = tuple(field) if isinstance(field, (tuple, list)) else (field,)
        for name in linked:
            if name not in _FIELDS:
                raise ValueError(f"{what}: unknown setting {name!r}; known: {list(_FIELDS)}")
        label = _label(field)
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"{what}: {label} needs a non-empty list of values, got {values!r}")
        if isinstance(field, (tuple, list)):
            for value in values:
                if not isinstance(value, (tuple, list)) or len(value) != len(linked):
                    raise ValueError(
                        f"{what}: each value of {label} must give {len(linked)} "
                        f"settings, got {value!r}"
                    )
            result.append(
                (
                    linked,
                    [
                        tuple(
                            _normalize(name, part) for name, part in zip(linked, value, strict=True)
                        )
                        for value in values
                    ],
                )
            )
        else:
            result.append((field, [_normalize(field, value) for value in values]))
    return result


def _label(field: Field) -> str:
    """A stage's name: the field, or the linked fields joined by "+"."""
    return "+".join(field) if isinstance(field, (tuple, list)) else field


def _settings(field: Field, value: Any) -> dict[str, Any]:
    """The settings one candidate of a stage changes: ``{field: value}``, or for linked
    fields (a tuple of names) each name with its part of ``value``."""
    if isinstance(field, tuple):
        return dict(zip(field, value, strict=True))
    return {field: value}


def _normalize(field: str, value: Any) -> Any:
    """``hidden=256`` means one layer of 256: (256,); NumPy scalars become Python's."""
    if isinstance(value, np.generic):
        value = value.item()
    if field == "hidden" and not isinstance(value, (tuple, list)):
        return (value,)
    if field == "hidden":
        return tuple(value)
    return value


def _check_config(name: str, config: TrainConfig, train_data: Data, num_classes: int) -> None:
    """Raises what training would raise for these settings, before any training starts."""
    try:
        for setting in ("epochs", "batch_size"):
            check_int(getattr(config, setting), setting, minimum=1)
        # One input is enough: the sizes of the hidden layers are checked all the same.
        net = build_model(1, num_classes, config)
        build_optimizer(net, config)
        DataLoader(train_data, batch_size=config.batch_size, dtype=config.dtype)
    except (ValueError, TypeError) as error:
        raise type(error)(f"candidate {name}: {error}") from None


def _check_data(train_data: Data, val_data: Data, num_classes: int | None) -> int:
    """The number of classes, after checking both sets are (images, labels) pairs."""
    for what, data in (("train_data", train_data), ("val_data", val_data)):
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise TypeError(f"{what} must be a pair (images, labels), got {type(data).__name__}")
        images, labels = data
        if not isinstance(images, np.ndarray) or not isinstance(labels, np.ndarray):
            raise TypeError(f"{what} must hold two numpy arrays (images, labels)")
        if (
            labels.ndim != 1
            or images.ndim < 2
            or images.shape[0] != labels.shape[0]
            or labels.shape[0] == 0
        ):
            raise ValueError(
                f"{what} must be images (N, ...) and labels (N,) with N >= 1, got "
                f"shapes {images.shape} and {labels.shape}"
            )
    if train_data[0][0].size != val_data[0][0].size:
        raise ValueError(
            f"train and validation images differ in size: "
            f"{train_data[0].shape[1:]} and {val_data[0].shape[1:]}"
        )
    largest = int(max(train_data[1].max(), val_data[1].max()))
    if num_classes is None:
        return largest + 1
    if num_classes <= largest:
        raise ValueError(f"num_classes must be > the largest label {largest}, got {num_classes}")
    return num_classes


def _base_config(base: TrainConfig | Mapping[str, Any] | None, epochs: int) -> TrainConfig:
    if base is None:
        base = ORIGINAL_BASE
    elif isinstance(base, Mapping):
        base = TrainConfig.from_dict({**ORIGINAL_BASE.to_dict(), **base})
    elif not isinstance(base, TrainConfig):
        raise TypeError(f"base must be a TrainConfig, a dict or None, got {type(base).__name__}")
    return replace(base, epochs=epochs)


# ----------------------------------------------------------------------------
# the library's stages by name


def stage_names() -> dict[str, tuple[Field, tuple[Any, ...]]]:
    """``{"GROUP.STAGE": (field, values)}`` for every stage of :data:`STAGE_GROUPS`.

    A stage's name within its group is its field, or its linked fields joined
    by "+": ``"further.lr_decay"``, ``"further.momentum+nesterov+lr"``.
    """
    return {
        f"{group}.{_label(field)}": (field, values)
        for group, stages in STAGE_GROUPS.items()
        for field, values in stages
    }


def stages_by_name(names: Sequence[str]) -> list[tuple[Field, tuple[Any, ...]]]:
    """The library's stages for ``names``, in order: ``"GROUP"`` is all of a group,
    ``"GROUP.STAGE"`` one of its stages (see :func:`stage_names`).

    Raises
    ------
    ValueError
        For a name the library does not define, listing those it does.

    Examples
    --------
    >>> [_label(field) for field, _ in stages_by_name(["original.lr", "final"])]
    ['lr', 'weight_decay']
    """
    single = stage_names()
    stages: list[tuple[Field, tuple[Any, ...]]] = []
    for name in names:
        if name in STAGE_GROUPS:
            stages.extend(STAGE_GROUPS[name])
        elif name in single:
            stages.append(single[name])
        else:
            raise ValueError(
                f"unknown stage {name!r}; the library's stages are "
                f"{', '.join([*STAGE_GROUPS, *single])}"
            )
    return stages


# ----------------------------------------------------------------------------
# the searches


def sequential_search(
    train_data: Data,
    val_data: Data,
    stages: Stages = ORIGINAL_STAGES,
    base: TrainConfig | Mapping[str, Any] | None = None,
    *,
    epochs: int = 10,
    num_classes: int | None = None,
    n_jobs: int | None = None,
    backend: str | None = None,
    threads_per_worker: int | Literal["auto"] | None = 1,
    progress: bool = True,
    train_fn: TrainFn | None = None,
    repeats: int = 1,
) -> SearchResult:
    """The original project's search: one setting at a time, each from the best so far.

    Stage by stage, every value of the stage's setting is trained on top of the
    best settings so far, and the value with the highest final-epoch validation
    accuracy (ties: the lower validation loss, then the earlier value; with
    ``repeats``, the means over the seeds) is kept
    for the later stages. A stage with a single value fixes that setting from
    the start. Candidates whose settings were already trained are not trained
    again (their records are marked ``"reused"``).

    Parameters
    ----------
    train_data : Data
        ``(images, labels)`` to train on.
    val_data : Data
        ``(images, labels)`` to choose on. There is deliberately no
        test set argument: choosing on test data would overstate the result.
    stages : Stages
        ``[(field, values), ...]`` (or a dict, in its order): any
        :class:`~fcnn.training.TrainConfig` field, e.g. ``"lr"``,
        ``"hidden"`` (an int is one layer, a tuple several),
        ``"weight_decay"``, ``"momentum"``, ``"nesterov"``, ``"lr_decay"``,
        ``"lr_step"``. A field may appear twice. Default: the original's
        :data:`ORIGINAL_STAGES`.
    base : TrainConfig | Mapping[str, Any] | None
        the settings before the first stage, a TrainConfig or a dict of
        changes to :data:`ORIGINAL_BASE` (hidden (64,), no weight decay).
    epochs : int
        epochs per candidate; replaces ``base.epochs``.
    num_classes : int | None
        classes of the output layer; default: largest label + 1.
    n_jobs : int | None
        candidates trained at once, as joblib's ``n_jobs`` (-1: every
        core). None: joblib's default, i.e. 1 locally and every worker with
        ``backend="dask"`` or ``"ray"``, unless ``joblib.parallel_config``
        says otherwise.
    backend : str | None
        joblib backend: None (joblib's default, loky processes),
        ``"loky"``, ``"threading"``, ``"dask"`` (needs an active
        ``dask.distributed.Client``) or ``"ray"`` (joins the Ray cluster of
        ``ray.init()`` or of ``RAY_ADDRESS``; a local one is started
        otherwise). Moving a search to a cluster is this one argument.
    threads_per_worker : int | Literal['auto'] | None
        BLAS/OpenMP threads of each candidate's training:
        an int (default 1, the same whatever ``n_jobs``, so the results do
        not depend on it), ``"auto"`` for ``cores // workers`` (faster with
        few workers on many cores, but the last bits of the results then
        depend on ``n_jobs``), or None for no limit.
    progress : bool
        print one line per finished candidate and per stage.
    train_fn : TrainFn | None
        the trainer, called as ``train_fn(config, train_data,
        val_data=..., num_classes=..., progress=False)`` and returning
        ``(net, optimizer, history)``; default :func:`fcnn.training.fit`.
        Must be picklable (a module-level function) for parallel backends.
    repeats : int
        runs per candidate (default 1), with seeds ``base.seed``,
        ``base.seed + 1``, ... (the initial weights, the batch order, the
        warps and the dropout masks; the split stays). Candidates are then
        compared by their mean validation accuracy (ties: mean loss): a
        margin of a few images between two single runs is often the seed's,
        not the setting's. Each seed is a job of its own for ``n_jobs``.

    Returns
    -------
    SearchResult
        A :class:`SearchResult`; ``best_params`` are the last stage's winner.

    Raises
    ------
    ValueError, TypeError
        a bad setting or value (before anything trains),
        named with its candidate, or bad data.
    SearchError
        every candidate of a stage diverged.
    ImportError
        the backend's package is missing.

    Examples
    --------
    >>> (images, labels), _ = load_mnist()
    >>> train_data, val_data = train_val_split(images, labels, val_size=10_000)
    >>> result = sequential_search(train_data, val_data, n_jobs=2)
    >>> result.best_params["lr"], result.best_params["hidden"]
    >>> custom = sequential_search(train_data, val_data,
    ...     stages=[("lr", [0.05, 0.1]), ("momentum", [0.0, 0.9]), ("lr_decay", [0.5, 0.8])])
    """
    stage_list = _stage_list(stages, "stages")
    config = _base_config(base, epochs)
    for field, values in stage_list:
        if len(values) == 1:
            config = replace(config, **_settings(field, values[0]))
    num_classes = _check_data(train_data, val_data, num_classes)
    runner = _runner(
        train_data,
        val_data,
        num_classes,
        train_fn,
        n_jobs,
        backend,
        threads_per_worker,
        progress,
        repeats,
    )
    # Every value is checked on the base settings before the first stage trains.
    for field, values in stage_list:
        for value in values:
            _check_config(
                _name(_settings(field, value)),
                replace(config, **_settings(field, value)),
                train_data,
                num_classes,
            )

    records: list[dict[str, Any]] = []
    best_index = 0
    seen: dict[str, int] = {}
    for field, values in stage_list:
        label = _label(field)
        seen[label] = seen.get(label, 0) + 1
        stage = label if seen[label] == 1 else f"{label}#{seen[label]}"
        candidates = [
            (_name(_settings(field, value)), replace(config, **_settings(field, value)))
            for value in values
        ]
        for name, candidate in candidates:
            _check_config(name, candidate, train_data, num_classes)
        stage_records = runner.run(stage, candidates)
        winner = _select(stage_records)
        if winner is None:
            raise SearchError(
                f"every candidate of stage {stage!r} diverged; try smaller learning rates"
            )
        config = candidates[winner][1]
        best_index = len(records) + winner
        records.extend(stage_records)
        if progress:
            print(f"stage {stage}: best {_describe(stage_records[winner])}", flush=True)
    return SearchResult(records=records, best_index=best_index, kind="sequential")


def grid_search(
    train_data: Data,
    val_data: Data,
    grid: Stages,
    base: TrainConfig | Mapping[str, Any] | None = None,
    *,
    epochs: int = 10,
    num_classes: int | None = None,
    n_jobs: int | None = None,
    backend: str | None = None,
    threads_per_worker: int | Literal["auto"] | None = 1,
    progress: bool = True,
    train_fn: TrainFn | None = None,
    repeats: int = 1,
) -> SearchResult:
    """Trains every combination of the given values and keeps the best on validation.

    Parameters
    ----------
    train_data, val_data
        as :func:`sequential_search` (no test data).
    grid : Stages
        ``{field: values}`` or ``[(field, values), ...]``; the candidates
        are their product, the first field varying slowest.
        base, epochs, num_classes, n_jobs, backend, threads_per_worker,
        progress, train_fn, repeats: as :func:`sequential_search`.

    Returns
    -------
    SearchResult
        A :class:`SearchResult` of kind ``"grid"`` whose records all have
        stage ``"grid"``; the best has the highest final validation accuracy
        (ties: lower validation loss, then the earlier candidate).

    Raises
    ------
    ValueError, TypeError
        a bad setting, a field given twice, or bad data.
    SearchError
        every candidate diverged.
    ImportError
        the backend's package is missing.

    Examples
    --------
    >>> result = grid_search(train_data, val_data,
    ...                      {"lr": [0.05, 0.1], "hidden": [128, 256]}, n_jobs=-1)
    >>> len(result.records)
    4
    """
    grid_list = _stage_list(grid, "grid")
    names = [
        name for field, _ in grid_list for name in (field if isinstance(field, tuple) else (field,))
    ]
    if len(set(names)) != len(names):
        raise ValueError(f"grid names a setting twice: {names}")
    config = _base_config(base, epochs)
    num_classes = _check_data(train_data, val_data, num_classes)
    runner = _runner(
        train_data,
        val_data,
        num_classes,
        train_fn,
        n_jobs,
        backend,
        threads_per_worker,
        progress,
        repeats,
    )
    candidates = []
    for values in itertools.product(*(values for _, values in grid_list)):
        settings = {
            name: part
            for (field, _), value in zip(grid_list, values, strict=True)
            for name, part in _settings(field, value).items()
        }
        candidate = (_name(settings), replace(config, **settings))
        _check_config(*candidate, train_data, num_classes)
        candidates.append(candidate)
    records = runner.run("grid", candidates)
    best_index = _select(records)
    if best_index is None:
        raise SearchError("every candidate of the grid diverged; try smaller learning rates")
    if progress:
        print(f"grid: best {_describe(records[best_index])}", flush=True)
    return SearchResult(records=records, best_index=best_index, kind="grid")


def _runner(
    train_data: Data,
    val_data: Data,
    num_classes: int,
    train_fn: TrainFn | None,
    n_jobs: int | None,
    backend: str | None,
    threads_per_worker: int | Literal["auto"] | None,
    progress: bool,
    repeats: int,
) -> _Runner:
    check_n_jobs(n_jobs)
    check_threads(threads_per_worker)
    repeats = check_int(repeats, "repeats", minimum=1)
    if backend is not None and not isinstance(backend, str):
        raise TypeError(f"backend must be a joblib backend name or None, got {backend!r}")
    return _Runner(
        tuple(train_data),
        tuple(val_data),
        num_classes,  # type: ignore[arg-type]
        fit if train_fn is None else train_fn,
        n_jobs,
        backend,
        threads_per_worker,
        progress,
        repeats,
    )


def _name(settings: Mapping[str, Any]) -> str:
    """``"lr=0.1 hidden=256x128"``."""
    return " ".join(f"{field}={format_value(value)}" for field, value in settings.items())
