"""Evaluation metrics (issue 6, in progress): localisation against ground truth and faithfulness to the model.

Each metric is a small class that declares which way is better and what it needs, and scores a whole
batch at once (one value per sample).
"""

from camstream.eval.faithfulness import AverageDrop, DeletionAUC, IncreaseInConfidence, InsertionAUC
from camstream.eval.localisation import Dice, IoU, PointingGame, Precision, Recall
from camstream.eval.boundary import BoundaryF1
from camstream.eval.metric import Metric

__all__ = ["AverageDrop", "BoundaryF1", "DeletionAUC", "Dice", "IncreaseInConfidence", "InsertionAUC", "IoU",
           "Metric", "PointingGame", "Precision", "Recall"]
