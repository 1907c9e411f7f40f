"""Filesystem helpers: outputs appear whole or not at all."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)  # read it (and put it back): os has no read-only call
    os.umask(mask)
    return mask


def _default_mode(path: Path, directory: bool) -> None:
    """Gives a temporary file or directory the mode a plain ``open`` / ``mkdir`` would have
    (0666 / 0777 less the umask): mkstemp and mkdtemp make them private to the owner, which
    would leave outputs unreadable by the group a cluster project shares them with."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def check_replaceable(target: Path, replacement: Path | None = None, owns=None) -> None:
    """Refuses to replace directory ``target`` when it holds entries that neither the replacement
    (``replacement``'s entries) nor a previous output of the same kind (``owns(name)``) would have:
    ``--overwrite`` replaces an earlier output, never a user's folder (``--export ~/models``) or files
    put beside an output. Refused before anything is deleted."""
    if not target.is_dir() or target.is_symlink():
        if target.exists() or target.is_symlink():
            raise FileExistsError(f"{target}: exists and is not a directory; --overwrite replaces only an earlier "
                                  "output directory")
        return
    new = {p.name for p in replacement.iterdir()} if replacement is not None else set()
    extra = sorted(p.name for p in target.iterdir() if p.name not in new and not (owns and owns(p.name)))
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise FileExistsError(f"{target}: holds {shown}, which the output replacing it would not have; --overwrite "
                              "would delete them, so nothing was replaced: move them away or choose another directory")


@contextlib.contextmanager
def atomic_directory(target: str | Path, overwrite: bool = False, owns=None) -> Iterator[Path]:
    """Yields a temporary directory beside ``target`` that is renamed to ``target`` on success.

    On any exception the temporary directory is removed and ``target`` is left as it was. With
    ``overwrite`` an existing ``target`` is replaced only when it holds nothing but what the new
    output holds or ``owns(name)`` accepts (:func:`check_replaceable`).
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target}: already exists (pass overwrite to replace it)")
    if (target.exists() or target.is_symlink()) and not target.is_dir():
        check_replaceable(target)  # a file where the output goes: refused before any work
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        _default_mode(tmp, directory=True)
        yield tmp
        if target.exists():
            check_replaceable(target, tmp, owns)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        _default_mode(Path(tmp), directory=False)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def lock_file(path: str | Path, wait: bool = False) -> int:
    """Opens ``path`` (created if absent) and holds an exclusive ``flock`` on it; returns the file
    descriptor (closing it releases the lock; so does the process's death). Held elsewhere:
    ``BlockingIOError`` (unless ``wait``). A file its previous holder unlinked while this process
    waited on it is not the lock any more: opened again. On a filesystem without ``flock`` the
    descriptor is returned unlocked."""
    import fcntl

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            raise
        except OSError:  # no flock here: the caller's record alone decides
            pass
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def git_revision() -> str | None:
    """The commit of the encoderlab checkout this code runs from (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None
