"""The pipeline: capture → ring → infer → render → sinks, with the models and explainers it runs."""
