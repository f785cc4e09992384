"""The commands that are not a wing of their own: `camstream explain` (one image), `camstream inspect` (a model's
layers) and `camstream fleet` (many streams over a Ray cluster). `camstream run` is `stream/`, `camstream eval`
`eval/`, `camstream bench` `bench/`, `camstream export` `backends/export.py`; `camstream.cli` parses them all."""
