"""fcnn.images and `fcnn predict` on image files: MNIST digits redrawn at other sizes,
positions and polarity must be predicted as the model predicts the original digit."""

import json

import numpy as np
import pytest

import fcnn
from fcnn.cli import main
from fcnn.datasets import load_mnist
from fcnn.images import load_image, mnist_preprocess
from fcnn.training import TrainConfig, fit

PIL = pytest.importorskip("PIL", reason="image files need Pillow: pip install fcnn[images]")
from PIL import Image  # noqa: E402

#: Share of redrawn digits that must get the original's prediction (issue 11, point 4).
REQUIRED_AGREEMENT = 0.95
RENDERED = 300


@pytest.fixture(scope="module")
def mnist_test(mnist_dir):
    _, test = load_mnist(mnist_dir, download=False, progress=False)
    return test


@pytest.fixture(scope="module")
def model(mnist_dir, tmp_path_factory):
    """A one-epoch 784-64-10 net saved as fcnn train would, with its class names."""
    (images, labels), _ = load_mnist(mnist_dir, download=False, progress=False)
    net, optimizer, _ = fit(
        TrainConfig(hidden=(64,), epochs=1, lr=0.05),
        (images, labels),
        num_classes=10,
        progress=False,
    )
    path = tmp_path_factory.mktemp("model") / "model.npz"
    fcnn.save(
        net,
        path,
        optimizer=optimizer,
        metadata={"dataset": "mnist", "class_names": [f"digit {d}" for d in range(10)]},
    )
    return net, path


def render(digit, rng):
    """The 28x28 MNIST digit redrawn: resized, placed anywhere on a bigger page, maybe
    dark on light, on a grey rather than black or white background."""
    side = int(rng.integers(20, 141))
    drawn = np.asarray(
        Image.fromarray(digit).resize((side, side), Image.Resampling.BILINEAR), np.float64
    )
    height, width = side + int(rng.integers(0, 120)), side + int(rng.integers(0, 120))
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    ink = np.zeros((height, width))
    ink[top : top + side, left : left + side] = drawn / 255
    if rng.random() < 0.5:  # black pen on white-ish paper
        paper = rng.uniform(190, 255)
        page = paper - ink * rng.uniform(150, paper)
    else:
        background = rng.uniform(0, 50)
        page = background + ink * (255 - background)
    return np.clip(np.rint(page), 0, 255).astype(np.uint8)


def test_redrawn_digits_are_predicted_as_the_originals(model, mnist_test, tmp_path, capsys):
    net, model_path = model
    test_images, _ = mnist_test
    rng = np.random.default_rng(11)
    chosen = rng.choice(test_images.shape[0], RENDERED, replace=False)
    formats = [("png", {}), ("jpg", {"quality": 92}), ("bmp", {})]
    folder = tmp_path / "digits"
    folder.mkdir()
    expected = {}
    for number, index in enumerate(chosen):
        suffix, options = formats[number % len(formats)]
        path = folder / f"{number:03d}.{suffix}"
        Image.fromarray(render(test_images[index], rng)).save(path, **options)
        expected[str(path)] = index
    originals = fcnn.predict(net, test_images[chosen])

    assert main(["predict", "--model", str(model_path), "--json", str(folder)]) == 0
    records = json.loads(capsys.readouterr().out)
    assert sorted(record["file"] for record in records) == sorted(expected)
    predicted = {record["file"]: record["predictions"][0]["class"] for record in records}
    agreement = np.mean(
        [predicted[name] == originals[number] for number, name in enumerate(sorted(expected))]
    )
    print(f"redrawn digits predicted as their originals: {agreement:.1%} of {RENDERED}")
    assert agreement >= REQUIRED_AGREEMENT


def test_preprocessing_leaves_mnist_digits_nearly_unchanged(mnist_test):
    images, _ = mnist_test
    differences = np.array(
        [np.abs(mnist_preprocess(image).astype(int) - image).mean() for image in images[:300]]
    )
    # MNIST's own recipe: most digits come back pixel for pixel.
    assert np.median(differences) == 0
    assert np.mean(differences < 2) > 0.9


def test_polarity_and_background_do_not_matter(mnist_test):
    digit = mnist_test[0][0]
    inverted = 255 - digit
    grey_page = (60 + digit.astype(float) * (195 / 255)).astype(np.uint8)
    base = mnist_preprocess(digit).astype(int)
    assert np.abs(mnist_preprocess(inverted).astype(int) - base).max() == 0
    assert np.abs(mnist_preprocess(grey_page).astype(int) - base).mean() < 3
    as_float = mnist_preprocess(digit / 255.0)
    assert as_float.dtype == np.uint8 and np.abs(as_float.astype(int) - base).max() <= 1


def test_shape_box_and_centre():
    page = np.full((200, 90), 255, np.uint8)
    page[20:170, 10:40] = 0  # a tall dark bar near the top left
    out = mnist_preprocess(page)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    rows = np.flatnonzero(out.max(axis=1) > 25)
    cols = np.flatnonzero(out.max(axis=0) > 25)
    assert rows[-1] - rows[0] + 1 == 20 and 1 <= cols[-1] - cols[0] + 1 <= 6
    mass = out.astype(float)
    centre = (
        (mass.sum(axis=1) * np.arange(28)).sum() / mass.sum(),
        (mass.sum(axis=0) * np.arange(28)).sum() / mass.sum(),
    )
    assert abs(centre[0] - 14) <= 0.5 and abs(centre[1] - 14) <= 0.5
    assert mnist_preprocess(page, size=14, box=10).shape == (14, 14)


@pytest.mark.parametrize(
    "image, error, message",
    [
        (np.zeros((5, 5), np.uint8), ValueError, "blank"),
        (np.full((5, 5), 255, np.uint8), ValueError, "blank"),
        (np.zeros((5, 5, 3), np.uint8), ValueError, "2-D"),
        (np.zeros((0, 5), np.uint8), ValueError, "2-D"),
        (np.full((5, 5), np.nan), ValueError, "NaN"),
        (np.zeros((5, 5), bool), TypeError, "numeric"),
        ([[0, 1]], TypeError, "numeric"),
    ],
)
def test_bad_images(image, error, message):
    with pytest.raises(error, match=message):
        mnist_preprocess(image)


def test_box_must_fit():
    with pytest.raises(ValueError, match="box must be in"):
        mnist_preprocess(np.eye(5, dtype=np.uint8), box=30)


def test_load_image_colour_transparency_and_errors(tmp_path):
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., 3] = 0  # transparent everywhere: white paper
    rgba[2:8, 3:5] = (200, 0, 0, 255)  # an opaque red stroke
    Image.fromarray(rgba, "RGBA").save(tmp_path / "stroke.png")
    gray = load_image(tmp_path / "stroke.png")
    assert gray.shape == (10, 12) and gray.dtype == np.uint8
    assert gray[0, 0] == 255 and gray[4, 3] < 100
    (tmp_path / "fake.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="fake.png: not an image file"):
        load_image(tmp_path / "fake.png")
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "none.png")


def test_predict_output_names_probabilities_and_top_k(model, mnist_test, tmp_path, capsys):
    net, model_path = model
    digit = mnist_test[0][0]
    Image.fromarray(255 - digit).save(tmp_path / "one.png")
    np.save(tmp_path / "two.npy", mnist_test[0][:2])
    assert (
        main(
            [
                "predict",
                "--model",
                str(model_path),
                "--top-k",
                "3",
                str(tmp_path / "one.png"),
                str(tmp_path / "two.npy"),
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [
        str(tmp_path / "one.png"),
        f"{tmp_path / 'two.npy'}[0]",
        f"{tmp_path / 'two.npy'}[1]",
    ]
    probabilities = fcnn.predict_proba(net, mnist_test[0][:2])
    for line, row in zip(lines[1:], probabilities, strict=True):
        fields = line.split("\t")[1:]
        assert len(fields) == 3
        best = int(np.argmax(row))
        assert fields[0] == f"digit {best} {row[best]:.4f}"
        shown = [float(field.rsplit(" ", 1)[1]) for field in fields]
        assert shown == sorted(shown, reverse=True)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("blank.png", np.zeros((8, 8), np.uint8), "blank"),
        ("broken.png", None, "not an image file"),
    ],
)
def test_predict_bad_image_files_exit_1(model, tmp_path, capsys, name, content, message):
    path = tmp_path / name
    if content is None:
        path.write_bytes(b"\x89PNG garbage")
    else:
        Image.fromarray(content).save(path)
    assert main(["predict", "--model", str(model[1]), str(path)]) == 1
    err = capsys.readouterr().err
    assert message in err and name in err and err.count("\n") == 1


def test_predict_empty_folder_exit_1(model, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("no images here")
    assert main(["predict", "--model", str(model[1]), str(tmp_path)]) == 1
    assert "holds no image files" in capsys.readouterr().err
