"""Errors a user can cause. The CLI prints their message as one line and exits with code 2."""


class CamstreamError(Exception):
    """Base class for user-facing errors (bad path, bad layer name, unreachable source ...)."""

    exit_code = 2


class InputError(CamstreamError):
    """An input (image, video, camera, URL) is missing, unreadable or unsupported."""


class ModelError(CamstreamError):
    """A model, weights file, target layer or method name is unknown or unusable."""
