"""One master per study: the study directory's lock.

A second master on the same study would interleave its journal with the first's and hand out
the same configurations twice, and two masters creating one study would each write its secret
and settings, so the master holds an exclusive lock on ``master.lock`` in the study directory
from before it looks at the study (creating it included) until it stops.

The lock is ``flock`` on the file, checked: only a lock held elsewhere (``EWOULDBLOCK``) means
"a master is already running"; a file system that has no ``flock`` (Lustre mounted without
``-o flock``, NFS without a lock manager) or an I/O error is reported as what it is, with the
file and what to do. The holder writes "pid N on HOST" into the file, so the refusal can name it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import threading
from pathlib import Path

from bohb_runner.errors import StudyError

LOCK_FILE = "master.lock"

# flock's answers on a file system that does not implement it (the kernel's, FUSE's, NFS's)
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL}
_ATTEMPTS = 5


class StudyLock:
    """One master per study: an exclusive ``flock`` on ``master.lock``, taken before the study
    is looked at (or created) and held until the master stops.

    Re-entrant within a process (``open_study`` takes it, ``run_master`` takes it again), since
    two flocks of one process on one file conflict.
    """

    _held: dict[Path, tuple[int, int]] = {}  # path -> (descriptor, holds)
    _guard = threading.Lock()

    def __init__(self, study_dir: Path) -> None:
        self.path = (Path(study_dir) / LOCK_FILE).resolve()

    def acquire(self) -> None:
        """Take the lock, or raise a one-line :class:`StudyError` saying why it cannot be taken."""
        with self._guard:
            if self.path in self._held:
                fd, count = self._held[self.path]
                self._held[self.path] = (fd, count + 1)
                return
            for _ in range(_ATTEMPTS):
                fd, created = self._open()
                try:
                    self._flock(fd)
                    if self._still_the_lock_file(fd):
                        break
                except _HeldElsewhere:
                    os.close(fd)
                    raise
                except BaseException:
                    os.close(fd)
                    if created:  # nobody else can hold a file this call made and could not lock
                        self.path.unlink(missing_ok=True)
                    raise
                # the file was removed (a creation that failed cleans up) between our open and our
                # flock: we hold a lock nobody else can see; take the file that is there now
                os.close(fd)
            else:
                raise StudyError(f"{self.path}: the lock file keeps being replaced; is another master starting?")
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
            self._held[self.path] = (fd, 1)

    def release(self, *, remove: bool = False) -> None:
        """Give one hold back; the last one unlocks. ``remove`` deletes the lock file first (while
        it is still held), for a study directory that turned out not to be created after all."""
        with self._guard:
            if self.path not in self._held:
                return
            fd, count = self._held[self.path]
            if count > 1:
                self._held[self.path] = (fd, count - 1)
                return
            del self._held[self.path]
            if remove:
                self.path.unlink(missing_ok=True)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @property
    def held(self) -> bool:
        """Whether this process holds the lock."""
        with self._guard:
            return self.path in self._held

    def _open(self) -> tuple[int, bool]:
        """The lock file's descriptor, and whether this call created the file."""
        try:
            for _ in range(_ATTEMPTS):
                try:
                    return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
                except FileExistsError:
                    pass
                try:
                    return os.open(self.path, os.O_RDWR), False
                except FileNotFoundError:  # removed in between: create it after all
                    if not self.path.parent.is_dir():
                        raise
        except FileNotFoundError:
            raise StudyError(f"{self.path.parent}: no such study directory") from None
        except OSError as exc:
            raise StudyError(f"{self.path}: cannot open the study's lock file ({exc.strerror})") from None
        raise StudyError(f"{self.path}: the lock file keeps being replaced; is another master starting?")

    def _flock(self, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # EWOULDBLOCK / EAGAIN: held by another open file, i.e. another master
            raise _HeldElsewhere(
                f"{self.path.parent}: a master is already running this study ({self._owner(fd)})"
            ) from None
        except OSError as exc:
            problem = f"{exc.strerror or exc} [{errno.errorcode.get(exc.errno or 0, exc.errno)}]"
            if exc.errno in _UNSUPPORTED:
                raise StudyError(
                    f"{self.path}: cannot lock the study ({problem}): its file system does not support flock; "
                    "mount it with flock support (Lustre: -o flock; NFS: a lock manager, or local_lock=flock "
                    "if only one node runs masters), or use a --study-dir on a local disk"
                ) from None
            raise StudyError(f"{self.path}: cannot lock the study ({problem})") from None

    def _still_the_lock_file(self, fd: int) -> bool:
        try:
            there = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino)

    @staticmethod
    def _owner(fd: int) -> str:
        try:
            text = os.pread(fd, 200, 0).decode(errors="replace").strip()
        except OSError:
            text = ""
        return text or "another process"


class _HeldElsewhere(StudyError):
    """The lock is held by another open file of it: another master runs the study."""
