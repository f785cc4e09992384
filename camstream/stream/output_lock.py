"""One writer per output folder: a run holds an exclusive lock on OUT/.camstream.lock from before its model
loads until it ends, and a second run on the same folder is refused in one line instead of silently mixing two
runs' videos and reports. The lock is the operating system's (`flock`), so it goes with the process: a run that
crashed, or was killed, never leaves the folder stuck."""

from __future__ import annotations

import os

from camstream.errors import InputError

LOCK_NAME = ".camstream.lock"


class OutputLock:
    """The exclusive lock on `folder` (made if missing); an InputError naming the run that holds it, or why the
    folder cannot be written. `release()` (or the process's end) frees it."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._handle = None
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise InputError(f"cannot write into {folder}: it is a file, not a folder (give another --out)")
        try:
            os.makedirs(folder, exist_ok=True)
            handle = open(os.path.join(folder, LOCK_NAME), "a+")  # noqa: SIM115 - held for the whole run
        except OSError as exc:
            raise InputError(f"cannot write into {folder}: {exc.strerror or exc} (give another --out)") from None
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, as before
            self._handle = handle
            return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise InputError(f"{folder} is being written by another camstream run (pid {holder}): give another "
                             "--out, or wait for that run to end") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        """Free the folder for the next run (the lock file stays: removing it would let two runs race)."""
        if self._handle is not None:
            self._handle.close()  # closing the file drops the flock
            self._handle = None
