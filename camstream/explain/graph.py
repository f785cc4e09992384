"""Graph models: a plain-torch GCN for graph classification, and which nodes and edges decided its class.

Graphs come as PyTorch Geometric does them, without needing it: node features x (N, F), edge_index
(2, E) of source → target node ids (an undirected edge is listed both ways), optional edge weights (E,)
and a graph id per node (`batch`, N) when several graphs are stacked.

Example::

    model = GCN(features=3, hidden=16, classes=2)
    found = GraphGradient()(model, x, edge_index)
    found.maps[0], found.edge_maps[0]             # (N,) and (E,) importance, each scaled to max 1
"""

from __future__ import annotations

from itertools import pairwise
from typing import ClassVar

import torch
from torch import nn

from camstream.errors import ModelError
from camstream.explain.result import Explanation, ModelKind, evaluation_mode


def normalised_adjacency(edge_index: torch.Tensor, edge_weight: torch.Tensor, nodes: int) -> torch.Tensor:
    """Â = D^-½ (A + I) D^-½ (Kipf & Welling 2017), dense (N, N), with A[target, source] = weight.
    The reference that `propagate` is tested against."""
    adjacency = torch.eye(nodes, dtype=edge_weight.dtype)
    adjacency = adjacency.index_put((edge_index[1], edge_index[0]), edge_weight, accumulate=True)
    scale = adjacency.sum(1).clamp_min(1e-12).rsqrt()
    return scale[:, None] * adjacency * scale[None, :]


def propagate(hidden: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor,
              normalise: bool = True) -> torch.Tensor:
    """P H by message passing over the edges plus a self loop per node, O(E·F) (no N×N matrix):
    out[t] = Σ_(s→t) c_st · w_st · H[s], with c_st = (d_s d_t)^-½ (Kipf & Welling; d: weighted in-degree
    with the self loop) when `normalise`, else 1 (the GraphConv / GIN sum)."""
    nodes = hidden.shape[0]
    loops = torch.arange(nodes)
    sources = torch.cat([edge_index[0], loops])
    targets = torch.cat([edge_index[1], loops])
    weights = torch.cat([edge_weight, torch.ones(nodes, dtype=edge_weight.dtype)])
    if normalise:
        scale = torch.zeros(nodes, dtype=weights.dtype).index_add(0, targets, weights).clamp_min(1e-12).rsqrt()
        weights = scale[targets] * weights * scale[sources]
    return torch.zeros_like(hidden).index_add(0, targets, hidden[sources] * weights[:, None])


class GCN(nn.Module):
    """Graph classifier: `layers` layers H ← relu(P H W), mean over each graph's nodes, linear head.

    P is Kipf & Welling's Â (`normalise=True`) or the plain sum A + I of GraphConv / GIN (`normalise=False`),
    applied by message passing (`propagate`).
    Called as model(x, edge_index, edge_weight=None, batch=None) → logits (graphs, classes).
    """

    def __init__(self, features: int, hidden: int, classes: int, layers: int = 2, normalise: bool = True) -> None:
        super().__init__()
        self.normalise = normalise
        widths = [features] + [hidden] * layers
        self.convs = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(widths))
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor | None = None,
                batch: torch.Tensor | None = None) -> torch.Tensor:
        nodes = x.shape[0]
        if edge_weight is None:
            edge_weight = torch.ones(edge_index.shape[1], dtype=x.dtype)
        hidden = x
        for conv in self.convs:
            hidden = torch.relu(propagate(conv(hidden), edge_index, edge_weight, self.normalise))
        if batch is None:
            batch = torch.zeros(nodes, dtype=torch.long)
        graphs = int(batch.max()) + 1
        pooled = torch.zeros(graphs, hidden.shape[1], dtype=hidden.dtype).index_add(0, batch, hidden)
        pooled = pooled / torch.bincount(batch, minlength=graphs).clamp_min(1)[:, None].to(hidden.dtype)
        return self.head(pooled)


class GraphMethod:
    """Base class: node and edge importance of one graph for a model called as
    model(x, edge_index, edge_weight) → logits (1, classes); subclasses say how they are scored."""

    name: ClassVar[str]
    model_kind: ClassVar[ModelKind] = ModelKind.GRAPH

    def __call__(self, model: nn.Module, x: torch.Tensor, edge_index: torch.Tensor,
                 class_id: int | None = None) -> Explanation:
        """`maps` (1, N) node importance, `edge_maps` (1, E) edge importance, for one graph."""
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ModelError(f"edge_index must be (2, E) node ids, got {tuple(edge_index.shape)}")
        with evaluation_mode(model), torch.inference_mode(False):
            logits, target, nodes, edges = self.scores(model, x, edge_index, torch.ones(edge_index.shape[1]),
                                                       class_id)
        nodes = nodes.clamp_min(0.0)
        edges = edges.clamp_min(0.0)
        nodes /= nodes.max().clamp_min(1e-12)
        edges /= edges.max().clamp_min(1e-12) if edges.numel() else 1.0
        score = torch.softmax(logits, 0)[target]
        return Explanation(self.model_kind, self.name, torch.tensor([target]), score.reshape(1), nodes[None],
                           logits[None], edge_maps=edges[None])

    @staticmethod
    def logits(model: nn.Module, x: torch.Tensor, edge_index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        try:
            logits = model(x, edge_index, weights)
        except TypeError as exc:
            raise ModelError(f"graph methods call model(x, edge_index, edge_weight); this model refused: {exc}") \
                from exc
        if logits.dim() == 2 and logits.shape[0] == 1:
            return logits[0]
        raise ModelError(f"a graph model must return (1, classes) logits for one graph, got {tuple(logits.shape)}")

    @staticmethod
    def pick(logits: torch.Tensor, class_id: int | None) -> int:
        """`class_id`, or the top class of `logits` when None."""
        return int(logits.argmax()) if class_id is None else int(class_id)

    def scores(self, model: nn.Module, x: torch.Tensor, edge_index: torch.Tensor, weights: torch.Tensor,
               class_id: int | None) -> tuple[torch.Tensor, int, torch.Tensor, torch.Tensor]:
        """(logits (classes,), target class (`pick`), raw node (N,) and edge (E,) importance for it), from as
        few passes as the method needs."""
        raise NotImplementedError


class GraphGradient(GraphMethod):
    """Gradients of the class score, one backward for both: node n: Σ_f x_nf · ∂y_c/∂x_nf; edge e:
    w_e · ∂y_c/∂w_e at w = 1 (negative: evidence against c, cut to 0)."""

    name = "graph-gradient"

    def scores(self, model: nn.Module, x: torch.Tensor, edge_index: torch.Tensor, weights: torch.Tensor,
               class_id: int | None) -> tuple[torch.Tensor, int, torch.Tensor, torch.Tensor]:
        features = x.detach().clone().requires_grad_(True)
        weights = weights.clone().requires_grad_(True)
        with torch.enable_grad():
            logits = self.logits(model, features, edge_index, weights)
            target = self.pick(logits, class_id)
            node_gradient, edge_gradient = torch.autograd.grad(logits[target], (features, weights))
        return (logits.detach(), target, (node_gradient * features).sum(1).detach(),
                (edge_gradient * weights).detach())


