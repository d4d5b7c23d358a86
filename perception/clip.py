"""CLIP embeddings of frames and regions, zero-shot tags, and goals described in words.

Optional: the encoder needs the ``clip`` extra (``pip install 'cairn[clip]'``: torch and
open_clip). Nothing here imports either until a :class:`ClipEncoder` is built, so a run that
does not ask for CLIP needs neither.

Where the weights come from (``ClipConfig``, docs/clip.md):

- ``pretrained``: an open_clip tag (``openai``, ``laion2b_s34b_b79k``, ...), fetched into
  open_clip's cache on first use, which needs the network once; or a path to a weights file;
- ``checkpoint``: a local weights file (an open_clip ``state_dict``, ``.bin``, ``.pt`` or
  ``.safetensors``) loaded into the model named by ``model``;
- ``model: local-dir:<folder>``: a folder with open_clip's ``open_clip_config.json`` (the
  architecture) and its weights file, as open_clip's hub repositories hold them;
- none of them: weights drawn at random from a fixed seed. Every process builds the same
  random model (so its embeddings can be stored and compared), but they mean nothing: tests
  and benchmarks only.

Frames are letterboxed, not centre-cropped as CLIP's own preprocessing does: a game screen
keeps counters and status along its edges, and a situation is the whole screen. Every
embedding is L2-normalised float32, so a dot product is a cosine similarity.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

RANDOM_SEED = 0
"""Seed of the random weights of a model built without any (see the module's docstring)."""
RESIZE_MODES = ("longest", "shortest", "squash")
_EXTRA = "pip install 'cairn[clip]'"


class ClipError(ValueError):
    """CLIP cannot be used as configured; the message says what is wrong and what to do."""


@dataclass
class ClipConfig:
    """CLIP in a run: which model and weights, the tag labels, a goal in words, the index."""

    model: str = "ViT-B-32"
    """An open_clip model name (``open_clip.list_models()``) or ``local-dir:<folder>``."""
    pretrained: str | None = None
    """An open_clip pretrained tag (needs the network once) or a path to a weights file."""
    checkpoint: str | None = None
    """A local weights file for ``model`` (instead of ``pretrained``)."""
    labels: list[str] = field(default_factory=list)
    """Texts to tag frames with, zero-shot (e.g. ``"a dark screen"``); empty: no tags."""
    tag_top_k: int = 3
    """At most this many tags per frame, the most likely first."""
    tag_min_score: float = 0.2
    """A label becomes a tag only if its zero-shot probability over ``labels`` is this high."""
    goal_text: str | None = None
    """A goal described in words, checked on the screen with :meth:`ClipEncoder.matches`."""
    goal_threshold: float = 0.25
    """Cosine similarity between frame and ``goal_text`` at which the goal counts as seen;
    it depends on the model (calibrate it on a few frames)."""
    index: bool = True
    """Embed every attempt's first frame into the store's situation index."""
    device: str = "cpu"
    """Torch device for the encoder (``cpu``, ``cuda``, ``cuda:1``)."""
    batch_size: int = 32
    """Frames per forward pass."""

    def __post_init__(self) -> None:
        if self.pretrained and self.checkpoint:
            raise ValueError("'clip.pretrained' and 'clip.checkpoint' both name weights; "
                             "give only one")
        if self.tag_top_k < 1:
            raise ValueError(f"'clip.tag_top_k' must be at least 1, got {self.tag_top_k}")
        if not 0.0 <= self.tag_min_score <= 1.0:
            raise ValueError(f"'clip.tag_min_score' must be within [0, 1], "
                             f"got {self.tag_min_score}")
        if not -1.0 <= self.goal_threshold <= 1.0:
            raise ValueError(f"'clip.goal_threshold' is a cosine similarity within [-1, 1], "
                             f"got {self.goal_threshold}")
        if self.batch_size < 1:
            raise ValueError(f"'clip.batch_size' must be at least 1, got {self.batch_size}")
        if len(set(self.labels)) != len(self.labels) or not all(self.labels):
            raise ValueError("'clip.labels' must be distinct, non-empty texts")

    def encoder(self) -> ClipEncoder:
        """Build the encoder this config describes (loads torch and the weights)."""
        checkpoint = Path(self.checkpoint) if self.checkpoint else None
        return ClipEncoder(self.model, self.pretrained, checkpoint, self.device,
                           self.batch_size)


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ClipError(f"CLIP needs {module}, which is not installed ({exc}); "
                        f"install the extra: {_EXTRA}") from exc


class ClipEncoder:
    """An open_clip model that embeds frames, regions of frames and texts.

    ``name`` says which model and weights (``ViT-B-32@openai``, ``ViT-B-32@weights.bin``,
    ``ViT-B-32@random``): the situation index refuses vectors of another encoder. ``dim`` is
    the embedding size.
    """

    def __init__(self, model: str = "ViT-B-32", pretrained: str | None = None,
                 checkpoint: Path | None = None, device: str = "cpu", batch_size: int = 32,
                 resize: str = "longest") -> None:
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if pretrained and checkpoint:
            raise ClipError("pretrained and checkpoint both name weights; give only one")
        if pretrained and Path(pretrained).is_file():
            checkpoint, pretrained = Path(pretrained), None
        self._torch = _require("torch")
        self._open_clip = _require("open_clip")
        self.model_name = model
        self.device = device
        self.batch_size = batch_size
        self.resize = resize
        self._model = self._build(model, pretrained, checkpoint)
        self.name = f"{_short_name(model)}@{self._weights(model, pretrained, checkpoint)}"
        self._tokenizer = self._open_clip.get_tokenizer(model)
        cfg = self._model.visual.preprocess_cfg
        size = cfg["size"]
        self.image_size: tuple[int, int] = (size, size) if isinstance(size, int) else tuple(size)
        self._mean = self._torch.tensor(cfg["mean"], device=device).view(1, 3, 1, 1)
        self._std = self._torch.tensor(cfg["std"], device=device).view(1, 3, 1, 1)
        self._texts: dict[str, np.ndarray] = {}
        self._logit_scale = float(self._model.logit_scale.exp())
        self.dim = int(self.encode_texts(["a picture"]).shape[1])

    def __repr__(self) -> str:
        return f"ClipEncoder({self.name!r}, dim={self.dim}, device={self.device!r})"

    # -- building --------------------------------------------------------------------------

    def _build(self, model: str, pretrained: str | None, checkpoint: Path | None) -> Any:
        torch, open_clip = self._torch, self._open_clip
        if not model.startswith(("local-dir:", "hf-hub:")) and model not in \
                open_clip.list_models():
            raise ClipError(f"unknown CLIP model {model!r}; pick one of open_clip.list_models() "
                            "(e.g. ViT-B-32) or give local-dir:<folder>")
        if model.startswith("local-dir:") and not Path(model[10:]).is_dir():
            raise ClipError(f"no folder {model[10:]} for CLIP model {model!r}; it should hold "
                            "open_clip_config.json and the weights")
        if pretrained and model.startswith(("local-dir:", "hf-hub:")):
            raise ClipError(f"CLIP model {model} brings its own weights; a pretrained tag "
                            f"({pretrained!r}) does not apply to it (a weights file may: "
                            "'clip.checkpoint')")
        if checkpoint is not None and not checkpoint.is_file():
            raise ClipError(f"CLIP checkpoint {checkpoint} does not exist; check "
                            "'clip.checkpoint'")
        tag = open_clip.get_pretrained_cfg(model, pretrained) if pretrained else {}
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_SEED)
                net = open_clip.create_model(  # OpenAI's weights were trained with QuickGELU
                    model, pretrained=pretrained, device="cpu",
                    force_quick_gelu=bool(tag and tag.get("quick_gelu")))
        except Exception as exc:  # open_clip raises RuntimeError, OSError, ValueError, ...
            raise ClipError(_build_error(model, pretrained, exc, open_clip)) from exc
        if checkpoint is not None:
            try:
                open_clip.load_checkpoint(net, str(checkpoint), strict=True)
            except Exception as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                raise ClipError(f"cannot load CLIP checkpoint {checkpoint} into model {model} "
                                f"({first[:300]}); give a weights file saved from that model"
                                ) from exc
        return net.requires_grad_(False).to(self.device).eval()

    def _weights(self, model: str, pretrained: str | None, checkpoint: Path | None) -> str:
        if checkpoint is not None:
            return checkpoint.name
        if pretrained:
            return pretrained
        if model.startswith("local-dir:"):
            folder = Path(model[10:])
            found = [p for ext in ("safetensors", "bin", "pth", "pt")
                     for p in sorted(folder.glob(f"*.{ext}"))]
            if found:
                return found[0].name
        if model.startswith("hf-hub:"):
            return "hub"
        return "random"

    # -- embedding -------------------------------------------------------------------------

    def encode_frames(self, frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Embeddings of frames (``(N, H, W, 3)``, one ``(H, W, 3)`` frame, or a list of
        frames of any sizes; uint8 RGB), ``(N, dim)`` float32, in batches of
        ``batch_size``."""
        if isinstance(frames, np.ndarray) and frames.ndim == 3:
            frames = frames[None]
        frames = [_check_frame(f, i) for i, f in enumerate(frames)]
        out = np.empty((len(frames), self.dim), np.float32)
        for start in range(0, len(frames), self.batch_size):
            batch = frames[start:start + self.batch_size]
            out[start:start + len(batch)] = self._encode_images(batch)
        return out

    def embed(self, frame: np.ndarray) -> np.ndarray:
        """One frame's embedding, ``(dim,)``."""
        return self.encode_frames([frame])[0]

    def encode_regions(self, frame: np.ndarray,
                       boxes: Sequence[tuple[int, int, int, int]]) -> np.ndarray:
        """Embeddings of crops of ``frame``: boxes ``(x0, y0, x1, y1)`` in pixels, the end
        excluded (``Percept.changed_region``'s convention), clipped to the frame."""
        frame = _check_frame(frame, 0)
        h, w = frame.shape[:2]
        crops = []
        for box in boxes:
            x0, y0, x1, y1 = (int(v) for v in box)
            x0, x1 = max(0, x0), min(w, x1)
            y0, y1 = max(0, y0), min(h, y1)
            if x1 <= x0 or y1 <= y0:
                raise ValueError(f"region {tuple(box)} holds no pixel of a {w}x{h} frame")
            crops.append(frame[y0:y1, x0:x1])
        if not crops:
            return np.empty((0, self.dim), np.float32)
        return self.encode_frames(crops)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of texts, ``(N, dim)`` float32; each text is encoded once and kept."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._texts]
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start:start + self.batch_size]
            tokens = self._tokenizer(chunk).to(self.device)
            with self._torch.inference_mode():
                vectors = self._model.encode_text(tokens, normalize=True)
            for text, vector in zip(chunk, vectors.float().cpu().numpy(), strict=True):
                self._texts[text] = vector
        if not texts:
            return np.empty((0, getattr(self, "dim", 0)), np.float32)
        return np.stack([self._texts[t] for t in texts])

    # -- words -----------------------------------------------------------------------------

    def tag_scores(self, image: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
        """Zero-shot probability of each label for ``image`` (a frame or its embedding),
        CLIP's softmax over the labels' similarities; they sum to 1."""
        if not labels:
            return {}
        sims = self.encode_texts(labels) @ self._vector(image)
        logits = self._logit_scale * sims
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        return dict(zip(labels, probs.astype(float).tolist(), strict=True))

    def tags(self, image: np.ndarray, labels: Sequence[str], top_k: int = 3,
             min_score: float = 0.0) -> list[str]:
        """The labels that fit ``image`` (a frame or its embedding) best, most likely first:
        at most ``top_k``, each with a zero-shot probability of at least ``min_score``."""
        scores = self.tag_scores(image, labels)
        ranked = sorted(scores, key=lambda label: -scores[label])
        return [label for label in ranked[:top_k] if scores[label] >= min_score]

    def matches(self, image: np.ndarray, text: str, threshold: float) -> tuple[bool, float]:
        """Whether ``image`` (a frame or its embedding) shows what ``text`` describes: the
        cosine similarity of the two and whether it reaches ``threshold``."""
        score = float(self.encode_texts([text])[0] @ self._vector(image))
        return score >= threshold, score

    def _vector(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim == 1:
            if image.shape[0] != self.dim:
                raise ValueError(f"an embedding of {self.name} has {self.dim} values, "
                                 f"got {image.shape[0]}")
            return image.astype(np.float32)
        return self.embed(image)

    # -- pixels to tensors -----------------------------------------------------------------

    def _encode_images(self, frames: list[np.ndarray]) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            if all(f.shape == frames[0].shape for f in frames):
                pixels = self._prepare(np.stack(frames))
            else:
                pixels = torch.cat([self._prepare(f[None]) for f in frames])
            vectors = self._model.encode_image(pixels, normalize=True)
        return vectors.float().cpu().numpy()

    def _prepare(self, frames: np.ndarray) -> Any:
        """``(N, H, W, 3)`` uint8 to normalised ``(N, 3, S, S)`` floats, resized by
        ``self.resize`` (letterboxed by default)."""
        torch = self._torch
        functional = torch.nn.functional
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        size_h, size_w = self.image_size
        h, w = x.shape[2:]
        if self.resize == "squash":
            target = (size_h, size_w)
        else:
            pick = max if self.resize == "longest" else min
            scale = pick(size_h / h, size_w / w)
            target = (max(1, round(h * scale)), max(1, round(w * scale)))
        if target != (h, w):
            x = functional.interpolate(x, size=target, mode="bicubic", align_corners=False,
                                       antialias=True).clamp_(0.0, 1.0)
        x = (x - self._mean) / self._std
        th, tw = target
        if self.resize == "longest":  # pad with zeros: the mean colour once normalised
            top, left = (size_h - th) // 2, (size_w - tw) // 2
            x = functional.pad(x, (left, size_w - tw - left, top, size_h - th - top))
        elif self.resize == "shortest":
            top, left = (th - size_h) // 2, (tw - size_w) // 2
            x = x[:, :, top:top + size_h, left:left + size_w]
        return x


def _check_frame(frame: Any, i: int) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise ValueError(f"frame {i} must be uint8 pixels, got {frame.dtype}")
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    elif frame.ndim == 3 and frame.shape[2] == 4:
        frame = frame[:, :, :3]
    if frame.ndim != 3 or frame.shape[2] != 3 or 0 in frame.shape:
        raise ValueError(f"frame {i} must be (H, W, 3) RGB, got shape {frame.shape}")
    return frame


def _short_name(model: str) -> str:
    if model.startswith("local-dir:"):
        return Path(model[10:]).resolve().name
    return model.removeprefix("hf-hub:")


def _build_error(model: str, pretrained: str | None, exc: Exception, open_clip: Any) -> str:
    first = (str(exc).strip().splitlines() or [repr(exc)])[0][:300]
    if pretrained and pretrained in open_clip.list_pretrained_tags_by_model(model):
        return (f"cannot load CLIP weights '{pretrained}' for {model}: open_clip could not "
                f"fetch them ({first}); on a machine without network, download the weights "
                "elsewhere and give the file as 'clip.checkpoint'")
    if pretrained:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(model)) or "none"
        return (f"'{pretrained}' is neither a pretrained tag of CLIP model {model} (its tags: "
                f"{tags}) nor a weights file")
    return f"cannot build CLIP model {model} ({first})"
