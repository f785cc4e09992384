"""camstream: live class-activation heatmaps over video."""

__version__ = "0.1.0"
