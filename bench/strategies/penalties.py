"""Weight penalties shared by the regularised fine-tuning strategies (L1, L2, L1-SP, L2-SP)."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def l2(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """sum ||w||^2"""
    return sum(p.pow(2).sum() for p in params)


def l1(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """sum |w|"""
    return sum(p.abs().sum() for p in params)


def l2_to(params: Iterable[torch.Tensor], reference: Iterable[torch.Tensor]) -> torch.Tensor:
    """sum ||w - w0||^2: the squared distance to a reference (the pretrained weights)."""
    return sum((p - p0).pow(2).sum() for p, p0 in zip(params, reference, strict=True))


def l1_to(params: Iterable[torch.Tensor], reference: Iterable[torch.Tensor]) -> torch.Tensor:
    """sum |w - w0|"""
    return sum((p - p0).abs().sum() for p, p0 in zip(params, reference, strict=True))
