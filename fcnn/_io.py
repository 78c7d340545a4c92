"""Atomic file writes shared by fcnn: a temporary file beside the target, renamed onto it.

Temporary files are named ``.<target name>.<pid>.<random><suffix>``. A process killed
mid-write cannot remove its own, so every writer first removes the ones of the same
target whose process is gone: leftovers never accumulate, and a write in progress in
another live process (or another thread of this one) is never touched.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["create_temp", "remove_stale_temps", "write_atomically"]


def _temp_parts(name: str, target: str, suffix: str) -> int | None:
    """The pid in ``name`` if it is one of ``target``'s temporary files, else None."""
    prefix = f".{target}."
    if not (name.startswith(prefix) and name.endswith(suffix)):
        return None
    middle = name[len(prefix) : len(name) - len(suffix)]
    pid, _, token = middle.partition(".")
    if not (pid.isdigit() and token):
        return None
    return int(pid)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another thread of ours may be writing it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, and belongs to another user
        return True
    except (OverflowError, ValueError):  # no process can have that number
        return False
    except OSError:
        return True
    return True


def remove_stale_temps(folder: Path, target: str, suffix: str) -> list[Path]:
    """Removes the temporary files of ``folder/target`` left by processes that died.

    Returns the paths removed. Files that cannot be listed or removed are left alone:
    cleaning up is a courtesy, never a reason for the write itself to fail.
    """
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        pid = _temp_parts(name, target, suffix)
        if pid is None or _process_alive(pid):
            continue
        path = Path(folder) / name
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed


def create_temp(folder: Path, target: str, suffix: str) -> tuple[BinaryIO, Path]:
    """A new temporary file for ``folder/target``, open for binary writing, and its path.

    It is created with mode 0666 and the kernel applies the umask, as for any new
    file: no umask juggling, which would race with other threads.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        path = Path(folder) / f".{target}.{os.getpid()}.{secrets.token_hex(6)}{suffix}"
        try:
            descriptor = os.open(path, flags, 0o666)
        except FileExistsError:
            continue
        return os.fdopen(descriptor, "wb"), path


def write_atomically(path: Path, write: Callable[[BinaryIO], None], suffix: str = ".tmp") -> None:
    """Writes ``path`` through ``write(file)``: all of it, or nothing at all.

    ``write`` fills a temporary file beside ``path``; once it returns, the data are
    flushed to disk and the file is renamed onto ``path``. Any error or interruption
    (also KeyboardInterrupt) removes the temporary file and leaves a previous file at
    ``path`` untouched. A replaced file's permission bits are kept; a new file gets
    the ordinary 0666 minus the umask.

    Raises
    ------
    OSError
        the folder is missing or read-only, the disk is full, ...: whatever
        the system reports, naming ``path``, with the previous file intact.
    """
    path = Path(path)
    folder = path.parent
    remove_stale_temps(folder, path.name, suffix)
    try:
        mode = path.stat().st_mode & 0o7777
    except OSError:
        mode = None
    try:
        temp, temp_path = create_temp(folder, path.name, suffix)
    except OSError as error:
        raise _naming(error, path) from error
    try:
        with temp:
            write(temp)
            temp.flush()
            os.fsync(temp.fileno())
        if mode is not None:
            os.chmod(temp_path, mode)
        os.replace(temp_path, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_path)
        if isinstance(error, OSError):
            raise _naming(error, path) from error
        raise
    fsync_folder(folder)


def write_text_atomically(path: Path, text: str) -> None:
    """Writes ``text`` as UTF-8 to ``path``, all or nothing (see :func:`write_atomically`)."""
    write_atomically(path, lambda file: file.write(text.encode("utf-8")))


def _naming(error: OSError, path: Path) -> OSError:
    """``error`` naming ``path`` (the file the user asked for, not our temporary file):
    "[Errno 28] No space left on device: 'model.npz'". Errors without errno are kept."""
    if error.errno is None or error.filename == str(path):
        return error
    return type(error)(error.errno, error.strerror, str(path))


def fsync_folder(folder: Path) -> None:
    """Makes a rename durable on POSIX; a no-op where folders cannot be opened (Windows)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
