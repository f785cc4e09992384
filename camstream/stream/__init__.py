"""The pipeline: capture → ring → infer → render → sinks, its config, its typed stage records and its report."""
