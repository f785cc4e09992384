"""Errors a user can cause. The CLI prints their message as one line and exits with code 2."""


class CamstreamError(Exception):
    """Base class for user-facing errors (bad path, bad layer name, unreachable source ...)."""

    exit_code = 2


class InputError(CamstreamError):
    """An input (image, video, camera, URL) is missing, unreadable or unsupported."""


class ModelError(CamstreamError):
    """A model, weights file, target layer or method name is unknown or unusable."""


class OutputError(CamstreamError):
    """An output could not be written during a run (disk full, no permission …); what was written is kept and
    finalised, and the report says so."""

    exit_code = 4


class StageError(CamstreamError):
    """A pipeline stage stopped on an error that is not the user's input; the report names it."""

    exit_code = 1


class StreamsFailed(CamstreamError):
    """Some streams of a several-stream run failed (a source that could not be opened or was lost) while the
    others ran to their end; the report has each one's error."""

    exit_code = 3
