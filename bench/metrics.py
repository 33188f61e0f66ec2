"""Classification metrics of one test evaluation: accuracy, macro-F1, per-class accuracy, confusion matrix."""

from __future__ import annotations

from typing import Any

import numpy as np


def classification_metrics(pred: np.ndarray, true: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Everything a final run records about its test predictions (JSON-ready). Computed with numpy, as
    scikit-learn's ``confusion_matrix`` and ``f1_score(average="macro", zero_division=0)`` over every class do
    (importing scikit-learn costs each worker process 1.4 s)."""
    k = len(classes)
    cm = np.bincount(np.asarray(true) * k + np.asarray(pred), minlength=k * k).reshape(k, k)  # rows: true class
    support, predicted, hits = cm.sum(axis=1), cm.sum(axis=0), np.diag(cm)
    per_class = np.divide(hits, support, out=np.full(k, np.nan), where=support > 0)
    f1 = np.divide(2 * hits, support + predicted, out=np.zeros(k), where=support + predicted > 0)
    return {
        "test_acc": float((pred == true).mean()),
        "test_macro_f1": float(f1.mean()),
        "per_class_acc": {c: (None if np.isnan(a) else float(a)) for c, a in zip(classes, per_class, strict=True)},
        "confusion_matrix": cm.tolist(),
    }
