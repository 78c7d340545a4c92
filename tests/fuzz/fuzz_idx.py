"""Coverage-guided fuzzing of the IDX reader (fcnn.read_idx), raw and gzip'd.

The first byte of each input picks the layout: even, the rest is the file as is;
odd, the rest is gzip-compressed first, so that mutations reach the IDX header and
sizes inside a valid gzip stream too (the seeds also hold real .gz files, raw).

    python tests/fuzz/fuzz_idx.py CORPUS_DIR [libFuzzer flags]

See tests/fuzz/README.md for the seeds and the flags used in CI.
"""

import gzip
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import check_rejection, scratch_file  # noqa: E402

with atheris.instrument_imports(include=["fcnn", "gzip", "zlib", "_compression"]):
    import fcnn.datasets as datasets

PATH = scratch_file("-idx")


def TestOneInput(data: bytes) -> None:  # noqa: N802 - atheris' name
    if not data:
        return
    body = data[1:]
    PATH.write_bytes(gzip.compress(body, compresslevel=1, mtime=0) if data[0] & 1 else body)
    try:
        array = datasets.read_idx(PATH)
    except BaseException as error:  # noqa: BLE001 - sorted by check_rejection
        check_rejection(error)
        return
    # Accepted: the array must be what the header says, within what the file held.
    if array.nbytes > max(len(body), 1) * 1032:
        raise AssertionError(f"{array.nbytes} bytes of array from {len(body)} bytes of file")


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    try:
        atheris.Fuzz()
    finally:
        PATH.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
