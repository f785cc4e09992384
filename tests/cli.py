"""Running the real `camstream` command in a subprocess."""

from __future__ import annotations

import subprocess
import sys


def camstream(*args: str, cwd=None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "camstream", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("camstream: error:") and fragment in lines[0], lines[0]


def one_stream(report: dict) -> dict:
    """A one-stream run's report read as before the single shape: the stream's entry with the run's settings."""
    assert report["total"]["streams"] == len(report["streams"]) == 1
    return {**report, **report["streams"][0]}
