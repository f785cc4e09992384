"""camstream: live class-activation heatmaps over video, and `explain(model, inputs)` for CNNs, vision
transformers, temporal (CNN + GRU/LSTM) and graph models."""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name in ("explain", "Explanation", "ModelKind"):  # imported on first use: the CLI starts without torch
        import camstream.explain as package

        return package if name == "explain" else getattr(package, name)
    raise AttributeError(f"module 'camstream' has no attribute '{name}'")
