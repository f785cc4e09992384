"""Running the real `camstream` command in a subprocess."""

from __future__ import annotations

import subprocess
import sys

from camstream.progress import is_progress_line


def camstream(*args: str, cwd=None, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "camstream", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=env)


def assert_one_line_error(result: subprocess.CompletedProcess, fragment: str, exit_code: int = 2) -> None:
    """`exit_code` and one error line naming `fragment`: the last line, after at most the progress lines that
    say what was being done (`camstream.progress.is_progress_line`); no traceback, nothing else."""
    assert result.returncode == exit_code, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and all(is_progress_line(line) for line in lines[:-1]), result.stderr
    assert lines[-1].startswith("camstream: error:") and fragment in lines[-1], lines[-1]


def one_stream(report: dict) -> dict:
    """A one-stream run's report read as before the single shape: the stream's entry with the run's settings."""
    assert report["total"]["streams"] == len(report["streams"]) == 1
    return {**report, **report["streams"][0]}
