"""`camstream eval`: metrics (localisation against ground truth, faithfulness to the model, robustness),
the explainers they compare (`explainers.py`: camstream's own methods wrapped for eval, RISE, Score-CAM and the
peers), and the suite that runs them.

Each metric is a small class that declares which way is better and what it needs, and scores a whole
batch at once (one value per sample).
"""

from camstream.eval.boundary import BoundaryF1
from camstream.eval.faithfulness import (
    Adcc,
    AverageDrop,
    DeletionAUC,
    DeletionAUCNormalised,
    DeletionCorrelation,
    IncreaseInConfidence,
    InsertionAUC,
    InsertionAUCNormalised,
    InsertionCorrelation,
)
from camstream.eval.localisation import (
    Dice,
    IoU,
    PointingGame,
    Precision,
    Recall,
    precision_recall_curve,
)
from camstream.eval.metric import Metric
from camstream.eval.robustness import MaxSensitivity, TemporalStability

__all__ = ["Adcc", "AverageDrop", "BoundaryF1", "DeletionAUC", "DeletionAUCNormalised", "DeletionCorrelation", "Dice",
           "IncreaseInConfidence", "InsertionAUC", "InsertionAUCNormalised", "InsertionCorrelation", "IoU",
           "MaxSensitivity", "Metric", "PointingGame", "Precision", "Recall", "TemporalStability",
           "precision_recall_curve"]
