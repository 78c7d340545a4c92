# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # fcnn: the original project's report, end to end
#
# The original project (*FCN with numpy for handwritten digits recognition*) trained a
# fully-connected network on MNIST in plain NumPy. It chose its settings one at a time,
# 10 epochs per candidate: the learning rate (on a net with 64 hidden units, no weight
# decay), then the hidden size, then the weight decay; it then trained the chosen net,
# drew its curves, weights and confusion matrix, and reported about **93 %** test accuracy.
#
# This notebook runs the same steps with `fcnn`, whose kernels are in C:
#
# 1. the data, with a validation set carved out of the training images;
# 2. the original's sequential search, then the further search `fcnn` adds (the
#    schedule's α and T, momentum, Nesterov);
# 3. the chosen configuration trained for 30 epochs, and every figure of the report;
# 4. the trained net saved and loaded again;
# 5. the test report, beside the original's 93 %.
#
# **Running it.** MNIST is read from `$FCNN_DATA` if set, else from `~/.cache/fcnn`
# (downloaded and checksummed on first use). The full run takes about 6 minutes on
# two cores. With `FCNN_NOTEBOOK_FAST=1` the same cells run a
# reduced version (6,000 training and 1,000 validation images, two epochs per run,
# smaller grids) in well under two minutes; `tests/test_notebook.py` runs it that way.
# All the switches are in the next cell.

# %% tags=["parameters"]
# Parameters: every switch of the notebook.
import os

FAST = os.environ.get("FCNN_NOTEBOOK_FAST") == "1"
DATA_DIR = os.environ.get("FCNN_DATA")  # None: ~/.cache/fcnn, downloaded if missing
N_JOBS = 2  # candidates trained at once
SEED = 0  # the split, the initial weights, the batch order

VAL_SIZE = 1_000 if FAST else 10_000  # training images held out for model selection
TRAIN_SIZE = 6_000 if FAST else None  # training images kept (None: all the rest)
SEARCH_EPOCHS = 2 if FAST else 10  # per candidate of the original's stages
FINAL_EPOCHS = 2 if FAST else 30  # the final run, and fcnn's last search stage

# The original's stages.
LRS = [1e-2, 0.5] if FAST else [1e-3, 1e-2, 1e-1, 0.5]
HIDDEN_SIZES = [64, 128] if FAST else [64, 128, 256, 512, 1024]
WEIGHT_DECAYS = [1e-4, 0.0] if FAST else [1e-3, 1e-4, 1e-5, 0.0]

# fcnn's further search, as fcnn.search defines it: FURTHER_STAGES (T, alpha, then
# momentum+Nesterov+lr linked) at SEARCH_EPOCHS, then FINAL_STAGES (weight decay) at
# FINAL_EPOCHS; fast: the first and last value of each stage.
from fcnn.search import FINAL_STAGES, FURTHER_STAGES

FURTHER, FINAL = (
    [(field, [values[0], values[-1]] if FAST else list(values)) for field, values in stages]
    for stages in (FURTHER_STAGES, FINAL_STAGES)
)

# fcnn's stages for accuracy beyond 99% (AUGMENT_STAGES: the warp's strength, dropout, the
# hidden size, the schedule's factor, the epochs) from fcnn train's defaults,
# AUGMENT_EPOCHS per candidate until the epochs stage; fast: the first and last value of
# each, small nets and epochs.
from fcnn.search import AUGMENT_STAGES

AUGMENT_EPOCHS = 1 if FAST else 30
AUGMENT = [
    (field, [values[0], values[-1]] if FAST else list(values)) for field, values in AUGMENT_STAGES
]
if FAST:
    AUGMENT = [
        (field, {"hidden": [32, 64], "epochs": [1, 2]}.get(field, values))
        for field, values in AUGMENT
    ]

ORIGINAL_TEST_ACCURACY = 0.93  # what the original project reported

# %%
# %matplotlib inline
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import matplotlib
import numpy as np
from IPython.display import display
from matplotlib.figure import Figure

# Without ipywidgets, tqdm draws its bars as text, which is all this notebook needs.
warnings.filterwarnings("ignore", message="IProgress not found")

import fcnn
from fcnn.datasets import MNIST_CLASSES, load_mnist, train_val_split
from fcnn.plot import (
    plot_accuracy,
    plot_confusion_matrix,
    plot_first_layer_weights,
    plot_loss,
    plot_misclassified,
    plot_search,
    plot_weight_matrix,
)
from fcnn.search import sequential_search
from fcnn.training import TrainConfig, evaluate, fit, predict, predict_proba

# Modest PNGs keep the notebook small.
matplotlib.rcParams["figure.dpi"] = 72
SEARCH_METRICS = ("train_loss", "train_accuracy", "val_accuracy")
CLASS_NAMES = list(MNIST_CLASSES)
started = time.perf_counter()
print(f"fcnn {fcnn.__version__}, {'fast' if FAST else 'full'} mode")


def show_search(result, title):
    """One figure per stage: every candidate's curves (diverged ones have none)."""
    for stage in result.stages:
        records = [record for record in result.stage_records(stage) if record["error"] is None]
        if records:
            display(plot_search(records, metrics=SEARCH_METRICS, title=f"{title}: {stage}"))


def print_search_table(result):
    """One row per candidate (last epoch); stage winners and the choice marked."""
    winners = {id(record) for record in result.stage_best().values()}
    rows = [("stage", "candidate", "val acc", "val loss", "train acc", "train loss", "seconds", "")]
    for index, record in enumerate(result.records):
        history = record["history"]
        if record["error"] is None:
            figures = (
                f"{record['val_accuracy']:.2%}",
                f"{record['val_loss']:.4f}",
                f"{history['train_accuracy'][-1]:.2%}",
                f"{history['train_loss'][-1]:.4f}",
            )
        else:
            figures = ("diverged", "", "", "")
        note = (
            "chosen"
            if index == result.best_index
            else "best of stage"
            if id(record) in winners
            else ""
        )
        if record["reused"]:
            note = f"{note} (same settings as an earlier run)".strip()
        rows.append((record["stage"], record["name"], *figures, f"{record['seconds']:.1f}", note))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())


def describe(config):
    """The settings that the searches choose, on one line."""
    return (
        f"hidden {','.join(map(str, config.hidden))}, lr {config.lr:g}, weight decay "
        f"{config.weight_decay:g}, alpha {config.lr_decay:g} every T = {config.lr_step} "
        f"steps, momentum {config.momentum:g}" + (" (Nesterov)" if config.nesterov else "")
    )


# %% [markdown]
# ## 1. The data
#
# The original selected its settings by their accuracy on the **test** set, which makes
# the final test figure optimistic: the test set has then been used to choose. `fcnn`
# holds out 10,000 of the 60,000 training images (a seeded random split) as a
# **validation** set; the searches choose on it, and the test set is only looked at in
# the final report. Images stay `uint8` (47 MB for the training set instead of 376 MB as
# float64); each batch is scaled to [0, 1] as it is drawn.

# %%
(images, labels), (test_images, test_labels) = load_mnist(DATA_DIR)
(train_images, train_labels), (val_images, val_labels) = train_val_split(
    images, labels, val_size=VAL_SIZE, seed=SEED
)
if TRAIN_SIZE is not None:
    train_images, train_labels = train_images[:TRAIN_SIZE], train_labels[:TRAIN_SIZE]
train_data, val_data = (train_images, train_labels), (val_images, val_labels)
test_data = (test_images, test_labels)

for name, split_labels in (
    ("train", train_labels),
    ("validation", val_labels),
    ("test", test_labels),
):
    counts = " ".join(f"{count:5d}" for count in np.bincount(split_labels, minlength=10))
    print(f"{name:>10}: {split_labels.shape[0]:6,d} images; per digit {counts}")

# %%
digits = Figure(figsize=(8, 2.4), layout="constrained")
for axes, image, label in zip(
    digits.subplots(2, 8).ravel(), train_images, train_labels, strict=False
):
    axes.imshow(image, cmap="gray_r")
    axes.set_title(CLASS_NAMES[label])
    axes.set_axis_off()
digits.suptitle("The first training images and their labels")
digits

# %% [markdown]
# ## 2. The original's sequential search
#
# Three stages, each starting from the best settings so far: the learning rate
# (1e-3, 1e-2, 1e-1, 0.5) on one hidden layer of 64 units without weight decay, then the
# hidden size (64 to 1024), then the weight decay (1e-3, 1e-4, 1e-5, none); 10 epochs per
# candidate, batches of 64, plain SGD, and the original's schedule: the rate times
# α = 0.5 every T = 500 steps. A candidate's score is its validation accuracy after the
# last epoch (ties: the lower validation loss). `fcnn.search` trains the candidates of a
# stage in parallel (`N_JOBS` at once, one BLAS thread each, so the figures do not depend
# on `N_JOBS`).
#
# What `fcnn` does differently, and why:
#
# * **The loss gradient is divided by the batch size**, `(softmax − onehot) / B`. The
#   original divided by the number of classes (10) instead of the batch size (64), so
#   its steps were 6.4 times what its learning rate said; here a learning rate means
#   what it means in PyTorch, and the same nominal rates take smaller steps than in
#   the original.
# * **The schedule has its floor**: `lr = lr0 · α^floor(t / T)`, the formula the
#   original wrote down. Its code dropped the floor, so the rate shrank at every step.
#   The two agree every T steps; either way, with T = 500 (0.64 of an epoch here) the
#   rate is below 1 % of its start after five epochs, so these 10-epoch runs mostly
#   compare the first few epochs. The further search below tunes α and T.
# * **He initialisation** (weights ~ N(0, 2 / inputs), right for ReLU) instead of the
#   original's standard normal, whose sums over 784 pixels start in the tens and
#   saturate the softmax.
# * **Selection on the validation set**, as explained above.
#
# Every setting is spelled out below, so that new defaults of `TrainConfig` or of
# `fcnn.search.ORIGINAL_BASE` leave this reproduction as it is.

# %%
ORIGINAL_SETTINGS = TrainConfig(
    hidden=(64,),
    lr=0.1,
    lr_decay=0.5,
    lr_step=500,
    staircase=True,
    weight_decay=0.0,
    momentum=0.0,
    nesterov=False,
    epochs=SEARCH_EPOCHS,
    batch_size=64,
    seed=SEED,
    dtype="float32",
    init="kaiming",
)

original = sequential_search(
    train_data,
    val_data,
    stages=[("lr", LRS), ("hidden", HIDDEN_SIZES), ("weight_decay", WEIGHT_DECAYS)],
    base=ORIGINAL_SETTINGS,
    epochs=SEARCH_EPOCHS,
    n_jobs=N_JOBS,
)

# %% [markdown]
# Each figure is one stage: the training loss and accuracy per epoch of every candidate,
# as in the original's report, and the validation accuracy the choice is made on.

# %%
show_search(original, "The original's search")

# %%
print_search_table(original)
print(
    f"\nchosen: {describe(original.best_config)}; "
    f"validation accuracy {original.best_record['val_accuracy']:.2%}"
)


# %% [markdown]
# ## 2b. The further search fcnn adds
#
# From the original's choice, `fcnn` searches what the original left fixed, as
# `fcnn.search` defines it. First `FURTHER_STAGES`, 10 epochs per candidate like the
# original's: the schedule's T and α, then momentum (heavy ball, `v ← m·v + g`; 0 is the
# original's plain SGD), Nesterov and the learning rate together, as linked triples, since
# momentum multiplies the step by about `1 / (1 − m)` (a rate good without momentum
# diverges with it) and Nesterov needs momentum.
#
# Then `FINAL_STAGES`: the weight decay again, with the final run's 30 epochs per
# candidate, since a regulariser's effect shows in long runs only. Its winner is exactly
# the configuration trained in section 3, and the `fcnn train` defaults come from this
# same search.
#
# How to read the tables: each stage keeps the best of its own values, so when the value
# carried in is not among them (a weight decay of 1e-5, say), a stage can end slightly
# below the one before; differences of a few images in 10,000 are within noise. And 10
# epochs are 7,820 steps here: with a T longer than that, the rate never decays within a
# candidate's run, so the α stage cannot tell its values apart and the tie goes to the
# first value.


# %%
def print_stages(stages):
    for field, values in stages:
        print("+".join(field) if isinstance(field, tuple) else field, values)


print_stages(FURTHER)
further = sequential_search(
    train_data,
    val_data,
    stages=FURTHER,
    base=original.best_config,
    epochs=SEARCH_EPOCHS,
    n_jobs=N_JOBS,
)

# %%
show_search(further, "The further search")

# %%
print_search_table(further)

# %%
print_stages(FINAL)
final_search = sequential_search(
    train_data, val_data, stages=FINAL, base=further.best_config, epochs=FINAL_EPOCHS, n_jobs=N_JOBS
)
chosen = final_search

# %%
show_search(final_search, f"The last stage, {FINAL_EPOCHS} epochs each")

# %%
print_search_table(final_search)
print()
for title, result in (
    ("original search", original),
    ("further search", further),
    ("last stage", final_search),
):
    epochs = result.best_config.epochs
    print(
        f"{title:>15}: {describe(result.best_config)}; validation accuracy "
        f"{result.best_record['val_accuracy']:.2%} after {epochs} epoch{'s' * (epochs > 1)}"
    )

# %% [markdown]
# ## 3. Training the chosen configuration
#
# The settings are chosen; the validation images have done their job. As `fcnn train`
# does, the final model trains on all the training images, the validation split put back
# (60,000 in full mode), for `FINAL_EPOCHS` epochs. The test set is evaluated after every
# epoch for the report only: nothing is chosen on it.

# %%
final_config = replace(chosen.best_config, epochs=FINAL_EPOCHS)
print(describe(final_config))
all_training = (
    np.concatenate([train_images, val_images]),
    np.concatenate([train_labels, val_labels]),
)
net, optimizer, history = fit(final_config, all_training, test_data=test_data, progress=True)
print(f"{sum(history['epoch_time']):.1f} s of training")

# %% [markdown]
# Train and test loss per epoch:

# %%
plot_loss(history)

# %% [markdown]
# Accuracy per epoch, the test curve among them:

# %%
plot_accuracy(history)

# %% [markdown]
# The first layer's weights of the first 32 hidden units, one 28 × 28 image per unit (red
# positive, blue negative, each unit on its own scale): the strokes each unit responds to.
# Pixels near the border are almost always 0, so their weights stay near their random
# start (shrunk only by the weight decay).

# %%
first_layer, second_layer = net.linear_layers()[:2]
plot_first_layer_weights(first_layer.weight, image_shape=(28, 28), max_units=32)

# %% [markdown]
# The second layer's weights: how each hidden unit (row) votes for each digit (column).

# %%
plot_weight_matrix(second_layer.weight)

# %% [markdown]
# The confusion matrix on the test set, in counts (rows: true digit, columns: predicted):

# %%
test_report = evaluate(net, test_images, test_labels, class_names=CLASS_NAMES)
plot_confusion_matrix(test_report["confusion_matrix"], class_names=CLASS_NAMES)

# %% [markdown]
# Test images the net gets wrong:

# %%
plot_misclassified(
    test_images, test_labels, test_report["predictions"], max_images=25, class_names=CLASS_NAMES
)

# %% [markdown]
# ## 4. Saving and loading
#
# `fcnn.save` writes one `.npz` (the arrays, and a JSON header with the layers, the
# optimiser's state, our metadata and a SHA-256 of the weights) that NumPy reads without
# pickle; `fcnn.load` rebuilds the net. The loaded net must predict exactly what the
# trained one does.

# %%
with tempfile.TemporaryDirectory() as folder:
    path = fcnn.save(
        net,
        Path(folder) / "mnist.npz",
        optimizer=optimizer,
        metadata={"config": final_config.to_dict(), "history": history},
    )
    size = path.stat().st_size
    loaded = fcnn.load(path)

same_classes = np.array_equal(predict(loaded, test_images), test_report["predictions"])
same_probabilities = np.array_equal(
    predict_proba(loaded, test_images), predict_proba(net, test_images)
)
assert same_classes and same_probabilities, "the loaded net predicts differently"
print(
    f"saved {size / 2**20:.1f} MB; the loaded net's predictions and probabilities are "
    f"identical to the trained net's on all {test_labels.shape[0]:,d} test images"
)

# %% [markdown]
# ## 5. The test report
#
# Precision, recall and F1 per digit on the 10,000 test images, and the accuracy beside
# the original's.

# %%
print(test_report["report_text"])
accuracy = test_report["accuracy"]
print(
    f"test accuracy after {FINAL_EPOCHS} epochs: fcnn {accuracy:.2%}, "
    f"the original {ORIGINAL_TEST_ACCURACY:.0%} "
    f"({100 * (accuracy - ORIGINAL_TEST_ACCURACY):+.2f} points)"
)
print(f"configuration: {describe(final_config)}")
print(
    f"chosen on validation: {chosen.best_record['val_accuracy']:.2%} after "
    f"{FINAL_EPOCHS} epochs on {train_labels.shape[0]:,d} images; the final model "
    f"trained on {all_training[1].shape[0]:,d}"
)

# %% [markdown]
# ## 6. Beyond 99%: warped training images
#
# The original stopped at 93%, and the search above reaches about 98.5%: the net has
# learned its 60,000 training images well, and more epochs only fit them better. Simard,
# Steinkraus and Platt (ICDAR 2003) took the same kind of net (one hidden layer) to 99.3%
# by training on distorted copies of the digits: small affine maps (translation, rotation,
# scale, shear) and elastic distortions (random displacement fields smoothed by a
# Gaussian). fcnn does that in C inside the fused epoch, each image warped anew every
# epoch from the uint8 digits, reproducibly from the seed. Here are some training digits
# (left column) and three warps of each at half the literature's strengths, then at the
# literature's own, which `fcnn train --augment` uses (the search below chooses among these,
# no warp and 1.5 times the literature's):

# %%
from fcnn.augmentation import LITERATURE, RECOMMENDED

samples = train_images[:6]
warps = Figure(figsize=(8, 5.4), layout="constrained")
axes = warps.subplots(6, 7)
for row, image in enumerate(samples):
    copies = [image] + [
        fcnn.augment(image[np.newaxis], strengths, seed=seed)[0]
        for strengths in (LITERATURE.scaled(0.5), RECOMMENDED)
        for seed in range(3)
    ]
    for column, copy in enumerate(copies):
        axes[row, column].imshow(copy, cmap="gray_r")
        axes[row, column].set_axis_off()
axes[0, 0].set_title("original", fontsize=9)
axes[0, 2].set_title(f"half: {LITERATURE.scaled(0.5).label()}", fontsize=9)
axes[0, 5].set_title(f"recommended: {RECOMMENDED.label()}", fontsize=9)
warps

# %% [markdown]
# How strongly to warp, whether dropout helps on top, how large a hidden layer, how fast the
# learning rate decays and how many epochs: chosen on the validation split, as before,
# stage after stage (`fcnn.search.AUGMENT_STAGES`, also `fcnn search --stages augment`),
# starting from `fcnn train`'s defaults.

# %%
print_stages(AUGMENT)
augment_search = sequential_search(
    train_data,
    val_data,
    stages=AUGMENT,
    base=TrainConfig(seed=SEED),
    epochs=AUGMENT_EPOCHS,
    n_jobs=N_JOBS,
)

# %%
show_search(augment_search, "The augmentation search")

# %%
print_search_table(augment_search)
augmented_config = augment_search.best_config
print(
    f"chosen: {augmented_config.augment.label() if augmented_config.augment else 'no warp'}, "
    f"dropout {augmented_config.dropout:g}, hidden {augmented_config.hidden}, "
    f"alpha {augmented_config.lr_decay:g}, {augmented_config.epochs} epochs"
)

# %% [markdown]
# The chosen settings trained on all the training images, the test set evaluated after
# every epoch for the report only:

# %%
augmented_net, _, augmented_history = fit(
    augmented_config, all_training, test_data=test_data, progress=True
)
print(f"{sum(augmented_history['epoch_time']):.1f} s of training")
plot_accuracy(augmented_history)

# %%
plot_loss(augmented_history)

# %%
augmented_accuracy = evaluate(augmented_net, test_images, test_labels)["accuracy"]
print(
    f"test accuracy: {augmented_accuracy:.2%} with warped training images, "
    f"{accuracy:.2%} without, the original {ORIGINAL_TEST_ACCURACY:.0%}"
)
print(f"notebook run: {time.perf_counter() - started:.0f} s, {'fast' if FAST else 'full'} mode")
