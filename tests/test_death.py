"""Death and interruption: kill -9 during fcnn.save and during a download, a full disk, a
read-only folder. The previous file always survives whole, and no temporary file outlives
the next write."""

from __future__ import annotations

import errno
import functools
import http.server
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import fcnn
from fcnn import _io
from fcnn.datasets import load_mnist
from fcnn.nn import Module

# Big enough (3.2 MB of weights) that a save takes a few milliseconds to write and fsync.
NET_CODE = """
from fcnn.functional import Linear, ReLU, Softmax
from fcnn.nn import Module

def make_net(seed):
    return Module(Linear(784, 1024, rng=seed), ReLU(), Linear(1024, 10, rng=seed + 1), Softmax())
"""
namespace: dict = {}
exec(NET_CODE, namespace)  # noqa: S102 - the same code the child processes run
make_net = namespace["make_net"]

SAVE_LOOP = (
    NET_CODE
    + """
import sys
import fcnn
nets = [make_net(1), make_net(2)]
print("ready", flush=True)
index = 0
while True:
    fcnn.save(nets[index % 2], sys.argv[1])
    index += 1
"""
)


def which_net(path: Path, candidates: dict[int, Module]) -> int:
    """The seed of the candidate whose weights ``path`` holds (fails if it is none of them)."""
    loaded = fcnn.load(path)
    for seed, net in candidates.items():
        if all(
            np.array_equal(a, b) for a, b in zip(loaded.parameters(), net.parameters(), strict=True)
        ):
            return seed
    raise AssertionError(f"{path} holds none of the nets saved")


def temp_files(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name != "model.npz")


@pytest.mark.slow
def test_sigkill_during_save_never_loses_the_model(tmp_path):
    """50 kills at random moments of a save loop: the file is always one whole model, and
    the next save removes whatever temporary files the killed processes left."""
    path = tmp_path / "model.npz"
    candidates = {seed: make_net(seed) for seed in (0, 1, 2)}
    fcnn.save(candidates[0], path)
    rng = random.Random(1234)
    orphans_seen = 0
    outcomes = set()
    for _ in range(50):
        # cwd: `python -c` puts it first on sys.path; a checkout there has no built core.
        child = subprocess.Popen(
            [sys.executable, "-c", SAVE_LOOP, str(path)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        try:
            assert child.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.0, 0.15))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stdout.close()
        outcomes.add(which_net(path, candidates))
        orphans_seen += bool(temp_files(tmp_path))
    # The kills landed at different stages: some before the first save completed, some after.
    assert len(outcomes) >= 2, outcomes
    assert orphans_seen > 0, "no kill landed mid-write: the test did not test anything"
    fcnn.save(candidates[0], path)
    assert temp_files(tmp_path) == []
    assert which_net(path, candidates) == 0


def test_next_save_removes_only_dead_processes_temp_files(tmp_path):
    path = tmp_path / "model.npz"
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    dead = tmp_path / f".model.npz.{finished.stdout.strip()}.0a1b2c3d4e5f.tmp"
    dead.write_bytes(b"PK half a model")
    ours = tmp_path / f".model.npz.{os.getpid()}.0a1b2c3d4e5f.tmp"  # another thread's, in flight
    ours.write_bytes(b"PK")
    other_target = tmp_path / f".other.npz.{finished.stdout.strip()}.0a1b2c3d4e5f.tmp"
    other_target.write_bytes(b"PK")
    fcnn.save(make_net(0), path)
    assert not dead.exists()
    assert ours.exists() and other_target.exists()


# ------------------------------------------------------------------- full and read-only disks


def enospc_after(limit: int):
    """A create_temp whose files raise ENOSPC once ``limit`` bytes were written."""
    real_create_temp = _io.create_temp

    class Full:
        def __init__(self, file):
            self.file, self.written = file, 0

        def write(self, data):
            self.written += len(data)
            if self.written > limit:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.file.write(data)

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            self.file.close()

    def create_temp(folder, target, suffix):
        file, path = real_create_temp(folder, target, suffix)
        return Full(file), path

    return create_temp


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_disk_full_keeps_the_old_model(tmp_path, monkeypatch, where):
    path = tmp_path / "model.npz"
    fcnn.save(make_net(0), path)
    if where == "write":
        monkeypatch.setattr(_io, "create_temp", enospc_after(100_000))
    else:

        def fsync(descriptor):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(_io.os, "fsync", fsync)
    with pytest.raises(OSError) as info:
        fcnn.save(make_net(1), path)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    assert str(path) in str(info.value)  # the file asked for, not the temporary one
    assert temp_files(tmp_path) == []
    assert which_net(path, {0: make_net(0)}) == 0


def private_mount_available() -> bool:
    if shutil.which("unshare") is None or sys.platform != "linux":
        return False
    probe = subprocess.run(
        [
            "unshare",
            "--mount",
            "--map-root-user",
            "sh",
            "-c",
            "mount -t tmpfs -o size=64k tmpfs /mnt 2>/dev/null || "
            "mount -t tmpfs -o size=64k tmpfs /tmp",
        ],
        capture_output=True,
    )
    return probe.returncode == 0


needs_private_mount = pytest.mark.skipif(
    not private_mount_available(),
    reason="needs unshare and user namespaces to mount a private tmpfs",
)

# Runs in a private mount namespace, with a 2 MB tmpfs mounted on $DIR.
IN_NAMESPACE = (
    NET_CODE
    + """
import errno, json, os, sys
from pathlib import Path
import fcnn
folder = Path(os.environ["DIR"])
step = sys.argv[1]
small = Module(Linear(20, 10, rng=0), Softmax())
if step == "first":
    fcnn.save(small, folder / "model.npz")
    sys.exit(0)
try:
    fcnn.save(make_net(1), folder / "model.npz")   # 3.2 MB: more than the disk holds
    outcome = {"error": None}
except OSError as error:
    outcome = {"error": error.errno, "message": str(error)}
loaded = fcnn.load(folder / "model.npz")
pairs = zip(loaded.parameters(), small.parameters())
outcome["intact"] = all(np.array_equal(a, b) for a, b in pairs)
outcome["files"] = sorted(os.listdir(folder))
print(json.dumps(outcome))
""".replace("import errno", "import numpy as np\nimport errno")
)


def run_in_namespace(tmp_path: Path, remount: str) -> dict:
    import json

    folder = tmp_path / "disk"
    folder.mkdir()
    script = tmp_path / "step.py"
    script.write_text(IN_NAMESPACE)
    shell = textwrap.dedent(f"""
        set -e
        mount -t tmpfs -o size=2m tmpfs "$DIR"
        "{sys.executable}" "{script}" first
        {remount}
        "{sys.executable}" "{script}" second
    """)
    result = subprocess.run(
        ["unshare", "--mount", "--map-root-user", "sh", "-c", shell],
        env={**os.environ, "DIR": str(folder)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@needs_private_mount
def test_save_to_a_full_tmpfs(tmp_path):
    outcome = run_in_namespace(tmp_path, remount="")
    assert outcome["error"] == errno.ENOSPC, outcome
    assert outcome["intact"] and outcome["files"] == ["model.npz"]


@needs_private_mount
def test_save_to_a_read_only_folder(tmp_path):
    outcome = run_in_namespace(tmp_path, remount='mount -o remount,ro "$DIR"')
    assert outcome["error"] == errno.EROFS, outcome
    assert "Read-only file system" in outcome["message"]
    assert outcome["message"].endswith("/model.npz'"), outcome["message"]
    assert outcome["intact"] and outcome["files"] == ["model.npz"]


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root writes into folders without write permission",
)
def test_save_to_a_folder_without_write_permission(tmp_path):
    path = tmp_path / "model.npz"
    fcnn.save(make_net(0), path)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(PermissionError):
            fcnn.save(make_net(1), path)
    finally:
        tmp_path.chmod(0o755)
    assert which_net(path, {0: make_net(0)}) == 0


# ---------------------------------------------------------------------------- killed downloads


class SlowHandler(http.server.BaseHTTPRequestHandler):
    """Serves the start of a real .gz file, then stalls (the client gets killed meanwhile)."""

    def do_GET(self):
        data = (Path(self.server.folder) / Path(self.path).name).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data[:1000])
            self.wfile.flush()
            time.sleep(30)
        except OSError:
            pass

    def log_message(self, format, *args):  # noqa: A002
        pass


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002
        pass


def serve(folder: Path, handler) -> tuple[http.server.ThreadingHTTPServer, str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.folder = str(folder)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    ).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def test_killed_download_leaves_no_part_file_next_time(tmp_path, mnist_dir):
    if not (mnist_dir / "train-labels-idx1-ubyte.gz").is_file():
        pytest.skip("needs the .gz files to serve")
    slow, slow_url = serve(mnist_dir, SlowHandler)
    good, good_url = serve(mnist_dir, functools.partial(QuietHandler, directory=str(mnist_dir)))
    root = tmp_path / "root"
    code = (
        "import sys, fcnn.datasets as d; "
        "d.load_mnist(sys.argv[1], progress=False, mirrors=[sys.argv[2]])"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(root), slow_url], cwd=tmp_path)
    try:
        folder = root / "MNIST"
        deadline = time.monotonic() + 30
        while not (folder.is_dir() and any(name.endswith(".part") for name in os.listdir(folder))):
            assert time.monotonic() < deadline, "the download never started"
            assert child.poll() is None, "the child ended before being killed"
            time.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert [name for name in os.listdir(folder) if name.endswith(".part")]
    try:
        load_mnist(root, progress=False, mirrors=[good_url])
    finally:
        slow.shutdown()
        good.shutdown()
    names = sorted(os.listdir(folder))
    assert not [name for name in names if name.endswith(".part")], names
    assert names == sorted(
        f"{name}.gz"
        for name in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    )
