"""Classification metrics of one test evaluation: accuracy, macro-F1, per-class accuracy, confusion matrix."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score


def classification_metrics(pred: np.ndarray, true: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Everything a final run records about its test predictions (JSON-ready)."""
    labels = np.arange(len(classes))
    cm = confusion_matrix(true, pred, labels=labels)
    support = cm.sum(axis=1)
    per_class = np.divide(np.diag(cm), support, out=np.full(len(classes), np.nan), where=support > 0)
    return {
        "test_acc": float((pred == true).mean()),
        "test_macro_f1": float(f1_score(true, pred, labels=labels, average="macro", zero_division=0)),
        "per_class_acc": {c: (None if np.isnan(a) else float(a)) for c, a in zip(classes, per_class, strict=True)},
        "confusion_matrix": cm.tolist(),
    }
