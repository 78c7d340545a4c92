"""Coverage-guided fuzzing of the model reader (fcnn.load): zip, .npy headers, JSON, checks.

    python tests/fuzz/fuzz_load.py CORPUS_DIR [libFuzzer flags]

The first byte of each input picks what the rest is: even, the whole file; odd, the JSON
document alone, stored with the arrays of a small valid model (mutating a zip rarely keeps
its CRCs right, so this is how mutations reach the checks of the JSON's fields). An
accepted file must give a net that predicts: its forward pass runs on one input.
See tests/fuzz/README.md for the seeds and the flags used in CI.
"""

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import check_rejection, scratch_file  # noqa: E402

with atheris.instrument_imports(
    include=["fcnn", "zipfile", "json", "numpy.lib.format", "numpy.lib._format_impl"]
):
    import numpy as np

    import fcnn.serialization as serialization

PATH = scratch_file(".npz")
# The arrays of the models make_corpus.py writes (Linear(6, 5), ReLU, Linear(5, 3), Softmax).
ARRAYS = {
    "layers.0.weight": np.full((6, 5), 0.5, np.float32),
    "layers.0.bias": np.zeros(5, np.float32),
    "layers.2.weight": np.full((5, 3), 0.25, np.float32),
    "layers.2.bias": np.zeros(3, np.float32),
}


def TestOneInput(data: bytes) -> None:  # noqa: N802 - atheris' name
    if data[:1] and data[0] & 1:
        with open(PATH, "wb") as file:
            np.savez(file, **ARRAYS, **{serialization.META_KEY: np.frombuffer(data[1:], np.uint8)})
    else:
        PATH.write_bytes(data[1:])
    try:
        checkpoint = serialization.load_checkpoint(PATH)
    except BaseException as error:  # noqa: BLE001 - sorted by check_rejection
        check_rejection(error)
        return
    net = checkpoint.net
    num_inputs = (
        net.layers[0].num_inputs if net.layers and hasattr(net.layers[0], "num_inputs") else 1
    )
    probabilities = net(np.zeros((1, num_inputs), net.dtype))
    if not np.isfinite(probabilities).all():
        raise AssertionError("a loaded net predicts NaN or infinity on zeros")


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    try:
        atheris.Fuzz()
    finally:
        PATH.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
