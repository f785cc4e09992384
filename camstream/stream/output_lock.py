"""One writer per output folder: a run holds an exclusive lock on OUT/.camstream.lock from before its model
loads until it ends, and a second run on the same folder is refused in one line instead of silently mixing two
runs' videos and reports. The lock is the operating system's (`flock`), so it goes with the process: a run that
crashed, or was killed, never leaves the folder stuck."""

from __future__ import annotations

import contextlib
import os

from camstream.errors import InputError
from camstream.storage import check_writable_folder

LOCK_NAME = ".camstream.lock"


class OutputLock:
    """The exclusive lock on `folder` (made if missing); an InputError naming the run that holds it, or why the
    folder cannot be written. `release()` (or the process's end) frees it."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._fd: int | None = None
        self._made_folder = not os.path.exists(folder)  # then a run that fails before writing leaves nothing
        check_writable_folder(folder)  # a file in the way, a read-only disk: said as every command says it
        try:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(os.path.join(folder, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError(f"cannot write into {folder}: {exc.strerror or exc} (give another --out)") from None
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, as before
            self._fd = fd
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise InputError(f"{folder} is being written by another camstream run (pid {holder}): give another "
                             "--out, or wait for that run to end") from None
        self._fd = fd
        try:  # who holds it, for the refusal's message (unbuffered: a full disk only loses that)
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError:
            pass

    def release(self, wrote: bool = True) -> None:
        """Free the folder for the next run. The lock file stays (removing it would let two runs race), unless the
        run wrote nothing (`wrote` False) into a folder it made: then the folder goes too, as if never made."""
        if self._fd is None:
            return
        path = os.path.join(self.folder, LOCK_NAME)
        if not wrote and self._made_folder and os.listdir(self.folder) == [LOCK_NAME]:
            with contextlib.suppress(OSError):
                os.remove(path)
                os.rmdir(self.folder)
        os.close(self._fd)  # closing the descriptor drops the flock
        self._fd = None

