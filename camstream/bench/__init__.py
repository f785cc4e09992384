"""Benchmarks: speed of the explainer vs plain inference and peers, the pipeline, the kernels."""
