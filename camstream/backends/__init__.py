"""Runtime backends: the same explanation on torch, ONNX Runtime or OpenVINO, behind one interface.

The pipeline hands a backend a batch of uint8 RGB frames at the model's size and gets an `Explanation` back;
it never knows which runtime ran (`base.Backend`). `factory.make_backend` builds the one a `BackendRequest`
asks for; a runtime is one `graph.GraphSession` class; `export` writes the graphs they run.
"""

from camstream.backends.base import Backend, BackendRequest
from camstream.backends.factory import make_backend
from camstream.catalog import BACKENDS

__all__ = ["BACKENDS", "Backend", "BackendRequest", "make_backend"]
