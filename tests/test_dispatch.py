"""`explain(model, inputs)`: the kind is detected, the fitting method runs, one result type comes back
with the same thresholds, and what it cannot read gets a clear error."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import camstream
from camstream.errors import ModelError
from camstream.explain.graph import GCN
from camstream.explain.temporal import ClipClassifier

from .test_graph import graphs
from .test_temporal import frame_encoder
from .test_vit import SIDE, tiny_timm_vit


def test_a_cnn_gets_gradcam_maps_over_its_feature_grid():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=5).eval()
    found = camstream.explain(model, torch.randn(2, 3, 64, 64), threshold="10")
    assert (found.kind, found.method) == ("cnn", "gradcam")
    assert found.maps.shape == (2, 2, 2) and found.kept.shape == (2, 2, 2)
    assert found.class_ids.shape == (2,) and found.scores.shape == (2,)


def test_a_vit_gets_vit_recipro_and_the_threshold_keeps_the_top_cells():
    torch.manual_seed(0)
    found = camstream.explain(tiny_timm_vit().eval(), torch.randn(3, 3, SIDE, SIDE), threshold="10")
    assert (found.kind, found.method) == ("vit", "vit-recipro")
    assert found.maps.shape == (3, 8, 8)
    for cam, kept, threshold in zip(found.maps.numpy(), found.kept, found.thresholds, strict=True):
        np.testing.assert_array_equal(kept, cam > threshold)
        assert kept.sum() <= 7  # the top 10 % of 64 cells (ties aside, never more)
    rollout = camstream.explain(tiny_timm_vit().eval(), torch.randn(1, 3, SIDE, SIDE), method="vit-rollout")
    assert rollout.method == "vit-rollout"


def test_clips_through_a_recurrent_model_get_time_step_importance():
    torch.manual_seed(0)
    model = ClipClassifier(frame_encoder(), 16, 3, cell="lstm")
    found = camstream.explain(model, torch.randn(2, 10, 1, 16, 16), threshold="dynamic")
    assert (found.kind, found.method) == ("temporal", "step-occlusion")
    assert found.maps.shape == (2, 10) and found.kept.shape == (2, 10)
    assert camstream.explain(model, torch.randn(1, 10, 1, 16, 16), method="step-gradient").method == "step-gradient"


def test_a_graph_gets_node_and_edge_importance():
    torch.manual_seed(0)
    x, edges, _, _ = graphs(1, seed=5)[0]
    model = GCN(3, 8, 2)
    found = camstream.explain(model, (x, edges), threshold="10")
    assert (found.kind, found.method) == ("graph", "graph-gradient")
    assert found.maps.shape == (1, 30) and found.edge_maps.shape == (1, edges.shape[1])
    assert found.kept.shape == (1, 30) and found.kept_edges.shape == (1, edges.shape[1])
    assert found.kept.sum() <= 3
    data = SimpleNamespace(x=x, edge_index=edges)  # PyTorch Geometric's Data carries the same two fields
    torch.testing.assert_close(camstream.explain(model, data).maps, found.maps)


def test_a_method_of_another_kind_is_refused():
    with pytest.raises(ModelError, match="'gradcam' does not explain temporal models; choose from step-occlusion"):
        camstream.explain(ClipClassifier(frame_encoder(), 16, 2), torch.randn(1, 4, 1, 16, 16), method="gradcam")


class _Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@pytest.mark.parametrize("inputs", [torch.randn(1, 3, 8, 8), torch.randn(2, 12)])
def test_an_unknown_architecture_names_what_was_looked_for(inputs):
    with pytest.raises(ModelError, match="cannot tell what kind of model.*recurrent layer.*vision transformer.*CNN"):
        camstream.explain(_Mlp(), inputs)


def test_bad_graph_inputs_and_bad_thresholds_are_clear():
    with pytest.raises(ModelError, match="is read as a graph"):
        camstream.explain(GCN(3, 8, 2), (torch.randn(4, 3), torch.randn(2, 5)))
    with pytest.raises(Exception, match="bad threshold"):
        camstream.explain(torchvision.models.resnet18(num_classes=2).eval(), torch.randn(1, 3, 64, 64),
                          threshold="lots")
