"""Image backbones: real pretrained weights, random init for scratch, timm's loader on local files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data as photos

from bench import backbones
from bench.backbones import image
from bench.backbones.weights import convert_by_order

MOBILENET = image.PACKAGED[0][:3]
EFFICIENTNET = image.PACKAGED[1][:3]


@pytest.fixture(scope="module")
def imagenet_model():
    """MobileNetV2 with its ImageNet head, loaded through the same path the benchmark uses."""
    return image.build_packaged(*MOBILENET, pretrained=True, num_classes=1000).eval()


@torch.no_grad()
def _top5(model, photo: np.ndarray) -> list[int]:
    return model(model.preprocess(photo[None])).topk(5).indices[0].tolist()


def test_pretrained_weights_classify_real_photos(imagenet_model):
    assert _top5(imagenet_model, photos.chelsea())[0] in range(281, 286)  # tabby .. Egyptian cat
    assert 967 in _top5(imagenet_model, photos.coffee())  # espresso


def test_efficientnet_lite0_weights_classify_real_photos():
    model = image.build_packaged(*EFFICIENTNET, pretrained=True, num_classes=1000).eval()
    assert model.mean.flatten().tolist() == [0.5, 0.5, 0.5]
    assert _top5(model, photos.chelsea())[0] in range(281, 286)
    assert 967 in _top5(model, photos.coffee())


def test_random_init_has_the_same_architecture_and_fails_the_cat(imagenet_model):
    scratch = image.build_packaged(*MOBILENET, pretrained=False, num_classes=1000).eval()
    pre, rnd = imagenet_model.state_dict(), scratch.state_dict()
    assert [(k, v.shape) for k, v in pre.items()] == [(k, v.shape) for k, v in rnd.items()]
    assert not torch.equal(pre["model.conv_stem.weight"], rnd["model.conv_stem.weight"])
    assert _top5(scratch, photos.chelsea())[0] not in range(281, 286)


def test_feature_backbone_matches_its_declared_dimension():
    spec = backbones.resolve("mobilenetv2_100")
    bb = spec.build(pretrained=True, input_size=64)
    feats = bb(bb.preprocess(np.zeros((2, 32, 32, 3), dtype=np.uint8)))
    assert feats.shape == (2, spec.feature_dim) == (2, 1280)


def test_preprocessing_follows_the_pretrained_config():
    import timm.data

    bb = backbones.resolve("mobilenetv2_100").build(pretrained=True)
    cfg = timm.data.resolve_data_config({}, model=bb.model)
    assert bb.input_size == cfg["input_size"][-1] == 224
    assert torch.allclose(bb.mean.flatten(), torch.tensor(cfg["mean"]))
    x = bb.preprocess(np.full((1, 32, 32, 3), 255, dtype=np.uint8))
    assert x.shape == (1, 3, 224, 224)
    assert torch.allclose(x[0, :, 0, 0], (1 - torch.tensor(cfg["mean"])) / torch.tensor(cfg["std"]), atol=1e-5)
    grey = bb.preprocess(np.zeros((1, 28, 28), dtype=np.uint8))
    assert grey.shape == (1, 3, 224, 224)


def test_converted_weights_are_cached_not_converted_again(monkeypatch):
    first = image.packaged_weights(*MOBILENET)
    stamp = first.stat().st_mtime_ns

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(image, "convert_by_order", no_conversion)
    assert image.packaged_weights(*MOBILENET) == first and first.stat().st_mtime_ns == stamp


def test_timm_hub_name_loads_a_local_file_through_timms_pretrained_path(tmp_path):
    import timm

    reference = timm.create_model("resnet18", num_classes=0)
    file = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), file)
    bb = backbones.resolve("timm:resnet18.a1_in1k").build(pretrained=True, weights=file)
    assert bb.feature_dim == 512
    for key, value in reference.state_dict().items():
        assert torch.equal(bb.model.state_dict()[key], value), key


def test_conversion_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="cannot convert"):
        convert_by_order({"a": torch.zeros(2)}, {"b": torch.zeros(3)})
