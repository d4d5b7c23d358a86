"""The CLIP encoder, on a tiny open_clip architecture with random weights (nothing is ever
downloaded: the hub is switched off before open_clip is loaded)."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import subprocess  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

from cairn.perception.clip import ClipConfig, ClipEncoder, ClipError  # noqa: E402

from ..conftest import TINY_CLIP as TINY  # noqa: E402
from ..conftest import tiny_clip_folder as tiny_folder  # noqa: E402

LABELS = ["a red screen", "a blue screen", "a green field", "darkness", "a small house"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return f"local-dir:{tiny_folder(tmp_path_factory.mktemp('clip') / 'tiny')}"


@pytest.fixture(scope="module")
def encoder(tiny):
    return ClipEncoder(tiny, batch_size=4)


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (10, 48, 64, 3), dtype=np.uint8)


def halves():
    """A frame red on the left, blue on the right."""
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:, :32, 0] = 220
    frame[:, 32:, 2] = 220
    return frame


def test_embeddings_are_unit_float32_vectors_of_the_models_size(encoder, frames):
    assert encoder.name == "tiny@random" and encoder.dim == 32
    out = encoder.encode_frames(frames)
    assert out.shape == (10, 32) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    cosines = out @ out.T
    assert cosines[np.triu_indices(10, 1)].max() < 0.9999  # frames are told apart
    assert encoder.encode_frames(frames[0]).shape == (1, 32)  # one (H, W, 3) frame


def test_batches_give_the_embeddings_of_one_frame_at_a_time(encoder, frames):
    batched = encoder.encode_frames(frames)  # batches of 4, 4 and 2
    single = np.stack([encoder.embed(f) for f in frames])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    mixed = [frames[0], frames[1][:40, :50], frames[2][:20]]  # sizes differ within a batch
    np.testing.assert_allclose(encoder.encode_frames(mixed),
                               np.stack([encoder.embed(f) for f in mixed]), atol=1e-5)


def test_random_weights_are_the_same_in_every_build(encoder, tiny, frames):
    again = ClipEncoder(tiny, batch_size=8)
    np.testing.assert_allclose(again.encode_frames(frames[:3]), encoder.encode_frames(frames[:3]),
                               atol=1e-6)


def test_region_crops_differ_from_the_whole_frame(encoder):
    frame = halves()
    whole = encoder.embed(frame)
    left, right, all_of_it, beyond = encoder.encode_regions(
        frame, [(0, 0, 32, 48), (32, 0, 64, 48), (0, 0, 64, 48), (-9, -9, 99, 99)])
    assert left @ whole < 0.99 and right @ whole < 0.99 and left @ right < 0.99
    np.testing.assert_allclose(all_of_it, whole, atol=1e-5)
    np.testing.assert_allclose(beyond, whole, atol=1e-5)  # clipped to the frame
    with pytest.raises(ValueError, match="holds no pixel"):
        encoder.encode_regions(frame, [(70, 0, 80, 10)])


def test_texts_encode_to_unit_vectors_each_the_same_every_time(encoder):
    out = encoder.encode_texts(["a red screen", "darkness", "a red screen"])
    assert out.shape == (3, 32) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(out[0], out[2])
    assert out[0] @ out[1] < 0.999


def test_zero_shot_tags_come_from_the_labels_most_likely_first(encoder, frames):
    frame = frames[3]
    scores = encoder.tag_scores(frame, LABELS)
    assert set(scores) == set(LABELS) and sum(scores.values()) == pytest.approx(1.0)
    ranked = sorted(LABELS, key=lambda label: -scores[label])
    assert encoder.tags(frame, LABELS, top_k=2) == ranked[:2]
    assert encoder.tags(frame, LABELS, top_k=5, min_score=scores[ranked[2]]) == ranked[:3]
    assert encoder.tags(frame, LABELS, top_k=5, min_score=1.0) == []
    assert encoder.tags(encoder.embed(frame), LABELS, top_k=2) == ranked[:2]  # an embedding
    assert encoder.tags(frame, [], top_k=2) == []


def test_matches_says_whether_a_goal_in_words_is_seen(encoder, frames):
    frame = frames[4]
    seen, score = encoder.matches(frame, "a small house", threshold=-1.0)
    assert seen is True and isinstance(score, float)
    assert score == pytest.approx(float(encoder.encode_texts(["a small house"])[0]
                                        @ encoder.embed(frame)), abs=1e-6)
    assert encoder.matches(frame, "a small house", score + 1e-4) == (False, score)
    assert encoder.matches(frame, "a small house", score - 1e-4)[0] is True
    with pytest.raises(ValueError, match="has 32 values"):
        encoder.matches(np.ones(7, np.float32), "a small house", 0.0)


def test_a_saved_checkpoint_loads_and_embeds_as_the_model_it_came_from(tiny, tmp_path,
                                                                       frames):
    trained = ClipEncoder(tiny)
    with torch.no_grad():  # weights no build draws: only loading can reproduce them
        generator = torch.Generator().manual_seed(1)
        for p in trained._model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    path = tmp_path / "trained.pt"
    torch.save(trained._model.state_dict(), path)
    expected = trained.encode_frames(frames[:4])

    loaded = ClipEncoder(tiny, checkpoint=path)
    assert loaded.name == "tiny@trained.pt"
    np.testing.assert_allclose(loaded.encode_frames(frames[:4]), expected, atol=1e-5)
    by_path = ClipEncoder(tiny, pretrained=str(path))  # a file given as ``pretrained``
    np.testing.assert_allclose(by_path.encode_frames(frames[:4]), expected, atol=1e-5)
    assert np.abs(ClipEncoder(tiny).encode_frames(frames[:4]) - expected).max() > 1e-3


def test_unusable_weights_fail_with_one_clear_line(tiny, tmp_path):
    with pytest.raises(ClipError, match=r"cannot load CLIP weights 'openai' for ViT-B-32.*"
                                        r"clip\.checkpoint"):
        ClipEncoder("ViT-B-32", pretrained="openai")  # a real tag, offline
    with pytest.raises(ClipError, match="'no-such-tag' is neither a pretrained tag"):
        ClipEncoder("ViT-B-32", pretrained="no-such-tag")
    with pytest.raises(ClipError, match="unknown CLIP model 'ViT-Q-99'"):
        ClipEncoder("ViT-Q-99")
    with pytest.raises(ClipError, match="brings its own weights"):
        ClipEncoder(tiny, pretrained="openai")
    with pytest.raises(ClipError, match="does not exist"):
        ClipEncoder(tiny, checkpoint=tmp_path / "missing.pt")
    other = {**TINY, "embed_dim": 16}
    wrong = ClipEncoder(f"local-dir:{tiny_folder(tmp_path / 'other', other)}")
    torch.save(wrong._model.state_dict(), tmp_path / "other.pt")
    with pytest.raises(ClipError, match="cannot load CLIP checkpoint .* into model"):
        ClipEncoder(tiny, checkpoint=tmp_path / "other.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ClipError, match="cannot load CLIP checkpoint .* into model"):
        ClipEncoder(tiny, checkpoint=tmp_path / "garbage.pt")


def test_the_smallest_builtin_model_builds_and_embeds_offline(frames):
    encoder = ClipEncoder("ViT-S-32")
    assert encoder.name == "ViT-S-32@random" and encoder.dim == 384
    assert encoder.image_size == (224, 224)
    assert encoder.encode_frames(frames[:2]).shape == (2, 384)


def test_frames_in_other_layouts(encoder):
    frame = halves()
    grey = frame[:, :, 0]
    np.testing.assert_allclose(encoder.embed(grey), encoder.embed(np.dstack([grey] * 3)),
                               atol=1e-6)
    rgba = np.dstack([frame, np.full(frame.shape[:2], 255, np.uint8)])
    np.testing.assert_allclose(encoder.embed(rgba), encoder.embed(frame), atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        encoder.embed(frame.astype(np.float32))


def test_config_checks_and_builds_the_encoder(tiny, frames, encoder):
    config = ClipConfig(model=tiny, labels=LABELS, batch_size=4)
    built = config.encoder()
    assert built.name == encoder.name and built.batch_size == 4
    with pytest.raises(ValueError, match="give only one"):
        ClipConfig(pretrained="openai", checkpoint="w.pt")
    with pytest.raises(ValueError, match="tag_top_k"):
        ClipConfig(tag_top_k=0)
    with pytest.raises(ValueError, match="clip.labels"):
        ClipConfig(labels=["a", "a"])


def test_without_the_extra_the_error_says_what_to_install(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)  # import open_clip now fails
    with pytest.raises(ClipError, match=r"pip install 'cairn\[clip\]'"):
        ClipEncoder(tiny)


def test_importing_the_modules_loads_neither_torch_nor_faiss():
    code = ("import sys, cairn.perception.clip, cairn.experience.situations; "
            "print(sorted({'torch', 'open_clip', 'faiss'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
