"""Publishing an atlas: one build at a time per folder, and all of it or nothing.

A build holds an exclusive lock on ``<atlas>/.lock`` (another build into the same folder is refused). Everything
an atlas shows (atlas.json and the files it names, the page, the icons, the thumbnails) is written into the staging
folder ``<atlas>/.next/``, where reused files are hard links to the published ones. Only when every file is
complete does the commit move them into place, atlas.json last, under a journal (``.next/.commit``): a run that
dies during the commit is finished by the next run, and a run that fails before it (a full disk, an error, a kill)
leaves the previous atlas as it was. Caches (``store/``, ``layout.raw.npy``, ``receptive_field.json``,
``keys/``) live beside, keyed by their inputs.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

from ..store import atomic_write_text
from ..types import UsageError

STAGING, TRASH, JOURNAL, LOCK = ".next", ".old", ".commit", ".lock"
LAST = "atlas.json"  # the commit point


class Lock:
    """An exclusive, non-blocking lock on the atlas folder for the whole build."""

    def __init__(self, out: Path):
        self.path = Path(out) / LOCK
        self.fd = None

    def __enter__(self):
        import fcntl
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(self.fd)
            self.fd = None
            raise UsageError(f"another atlas build (pid {holder}) is writing {self.path.parent}: wait for it to finish "
                             "or build into another --out") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
            self.fd = None


class Publication:
    """The staging folder of one build and its commit."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.next = self.out / STAGING
        self.old = self.out / TRASH

    def recover(self) -> None:
        """Finish a commit that a killed run began, or discard what an unfinished run staged."""
        if (self.next / JOURNAL).is_file():
            self._move_all(json.loads((self.next / JOURNAL).read_text()))
        shutil.rmtree(self.next, ignore_errors=True)
        shutil.rmtree(self.old, ignore_errors=True)

    def begin(self) -> Path:
        shutil.rmtree(self.next, ignore_errors=True)
        self.next.mkdir(parents=True)
        return self.next

    def reuse(self, rel: str) -> bool:
        """Hard-link the published file or folder ``rel`` into the staging folder (copy where links fail)."""
        src, dst = self.out / rel, self.next / rel
        if not src.exists():
            return False
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, copy_function=_link, dirs_exist_ok=True)
        else:
            _link(src, dst)
        return True

    def commit(self) -> None:
        """Move every staged entry into place, atlas.json last; the journal makes it finishable after a crash."""
        entries = sorted((p.name for p in self.next.iterdir() if p.name != JOURNAL), key=lambda n: (n == LAST, n))
        atomic_write_text(self.next / JOURNAL, json.dumps(entries))
        self._move_all(entries)
        shutil.rmtree(self.next, ignore_errors=True)
        shutil.rmtree(self.old, ignore_errors=True)

    def _move_all(self, entries) -> None:
        self.old.mkdir(exist_ok=True)
        for name in entries:
            staged, target = self.next / name, self.out / name
            if not staged.exists() and not staged.is_symlink():
                continue  # moved before the crash
            if target.exists() or target.is_symlink():
                if (self.old / name).exists():
                    _remove(target)
                else:
                    os.replace(target, self.old / name)
            os.replace(staged, target)


def _link(src, dst) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
