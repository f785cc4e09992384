"""The model and what travels with it: `load.py` builds a network and its `ModelSpec` from a name or a file,
`card.py` the facts beside it (labels, input size, normalisation, resize mode: `ModelCard`), `preprocess.py`
turns a decoded frame into the model's input."""
