"""Evaluation with BatchNorm folded into the convolutions (bench/backbones/folding.py): the same function as the
model itself, on real pretrained weights and on the tiny test model, following the weights as they train."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from bench import backbones
from bench.backbones.base import Classifier
from bench.backbones.folding import conv_bn_pairs, denormals_flushed, folded
from bench.features import feature_key


def _classifier(name: str) -> Classifier:
    options = {} if name.startswith("tiny") else {"input_size": 64}
    torch.manual_seed(0)
    return Classifier(backbones.build(name, pretrained=True, reuse=False, **options), 10)


def _inputs(model: Classifier) -> torch.Tensor:
    size = model.backbone.input_size
    return torch.randn(8, 3, size, size, generator=torch.Generator().manual_seed(1))


def _unfolded(model: Classifier, x: torch.Tensor) -> torch.Tensor:
    model.backbone.fold_batchnorm = False
    try:
        with torch.no_grad():
            return model(x)
    finally:
        model.backbone.fold_batchnorm = True


# MobileNetV2 (plain convolutions), EfficientNet-Lite0 (timm's Conv2dSame), the tiny test model
FOLDED_PAIRS = [("mobilenetv2_100", 52), ("tf_efficientnet_lite0", 49), ("tiny_image", 13)]


@pytest.mark.parametrize(("name", "pairs"), FOLDED_PAIRS)
def test_folded_evaluation_computes_what_the_model_computes(name, pairs):
    model = _classifier(name).eval()
    x = _inputs(model)
    with torch.no_grad():
        fast = model(x)
    assert len(conv_bn_pairs(model.backbone.model)) == pairs
    assert model.backbone._folded._copy is not None, "evaluation went through the folded copy"
    torch.testing.assert_close(fast, _unfolded(model, x), rtol=1e-4, atol=1e-5)


def test_the_folded_copy_follows_the_weights_as_they_train_and_are_restored():
    model = _classifier("mobilenetv2_100")
    x = _inputs(model)
    start = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        first = model.eval()(x)
    # as the loop trains: fused AdamW, whose kernel writes the weights without counting it in their `_version`
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    for _ in range(2):
        model.eval()
        with torch.no_grad():
            before = model(x)
        model.train()
        for m in model.modules():  # BatchNorm statistics frozen (`batchnorm: frozen`): only the kernel writes
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        loss = nn.functional.cross_entropy(model(x), torch.zeros(len(x), dtype=torch.long))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        model.eval()
        with torch.no_grad():
            after = model(x)
        assert not torch.allclose(before, after), "evaluation saw the weights before the step"
        torch.testing.assert_close(after, _unfolded(model, x), rtol=1e-4, atol=1e-5)
    model.load_state_dict(start)  # in eval mode, as the loop restores its best validation's weights
    with torch.no_grad():
        torch.testing.assert_close(model(x), first)


def test_gradients_flow_to_the_model_itself_in_eval_mode():
    """Eval mode with gradients on (a frozen-BatchNorm fine-tune, an activation regulariser): the model, not a copy."""
    model = _classifier("tiny_image").eval()
    model(_inputs(model)).sum().backward()
    assert all(p.grad is not None for p in model.backbone.parameters())
    assert model.backbone._folded._copy is None


class _StandardisedConv(nn.Conv2d):
    """A convolution that transforms its weights (as timm's StdConv2d): folding into its weights would be wrong."""

    def forward(self, x):
        w = (self.weight - self.weight.mean(dim=(1, 2, 3), keepdim=True)) / (self.weight.std() + 1e-5)
        return self._conv_forward(x, w, self.bias)


class _Branch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y  # the convolution's output is read twice: folding would change the second read


def test_only_a_plain_convolution_read_by_its_batchnorm_alone_is_folded():
    assert conv_bn_pairs(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())) == [("0", "1")]
    assert conv_bn_pairs(nn.Sequential(_StandardisedConv(3, 4, 3), nn.BatchNorm2d(4))) == []
    assert conv_bn_pairs(_Branch()) == []


def test_a_folded_copy_is_the_same_function_with_the_batchnorm_gone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
    model[1].running_mean.uniform_(-1, 1)
    model[1].running_var.uniform_(0.5, 2)
    model[1].weight.data.uniform_(0.5, 2)
    copy_ = folded(model, conv_bn_pairs(model))
    assert isinstance(copy_[1], nn.Identity) and not copy_[0].weight.requires_grad
    assert copy_[0].weight is not model[0].weight
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(copy_(x), model(x))
    assert isinstance(model[1], nn.BatchNorm2d) and model[0].weight.requires_grad, "the model is left as it was"


def test_a_copied_backbone_folds_its_own_weights():
    model = _classifier("tiny_image").eval()
    with torch.no_grad():
        model(_inputs(model))
    copied = copy.deepcopy(model.backbone)
    assert copied._folded._copy is None


def test_features_folded_and_not_are_cached_apart():
    backbone = _classifier("tiny_image").backbone
    folded_key = feature_key(backbone, "manifest", "train")
    backbone.fold_batchnorm = False
    assert feature_key(backbone, "manifest", "train") != folded_key


def test_denormals_are_zero_inside_and_kept_outside():
    tiny = torch.tensor([1e-39])  # a denormal float32
    with denormals_flushed():
        flushed = tiny * 1.0
    if flushed.item() != 0.0:
        pytest.skip("this CPU cannot flush denormals")
    assert (tiny * 1.0).item() != 0.0
