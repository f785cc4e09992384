"""Credentials are cut the way FFmpeg reads a URL's authority (the last @ before the host), in any text."""

from __future__ import annotations

import pytest

from camstream.redaction import redact

CASES = {
    "rtsp://admin:Hunter2@Secret@cam.local:554/live": "rtsp://***@cam.local:554/live",
    "rtsp://admin:sl/ash@cam.local/live": "rtsp://***@cam.local/live",
    "rtsp://user:pass@10.0.0.2/stream?channel=1": "rtsp://***@10.0.0.2/stream?channel=1",
    "http://cam.local/video.mjpg?user=me&password=s3cret&fps=5": "http://cam.local/video.mjpg?user=me&password=***&fps=5",
    "https://cam.local/clip.mp4?token=abc.def": "https://cam.local/clip.mp4?token=***",
    "rtsp://cam.local/live": "rtsp://cam.local/live",  # nothing to hide
    "clip@2x.mp4": "clip@2x.mp4",  # a file name with an @ is not a URL
    "cannot open rtsp://a:b@h/x: refused; retry rtsp://c:d@@h2/y": "cannot open rtsp://***@h/x: refused; retry "
                                                                   "rtsp://***@h2/y",
}


@pytest.mark.parametrize("text", list(CASES))
def test_credentials_and_secret_parameters_are_hidden_whole(text):
    assert redact(text) == CASES[text]
