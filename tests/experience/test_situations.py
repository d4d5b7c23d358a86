"""The situation index on real store files: what it finds, what it keeps, what it refuses."""

import logging
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import sqlite3  # noqa: E402
from contextlib import closing  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("faiss")

from cairn.experience.situations import SituationIndex, SituationIndexError  # noqa: E402
from cairn.experience.store import ExperienceStore, StoreError  # noqa: E402

from ..conftest import tiny_clip_folder  # noqa: E402

DIM = 16


def unit(x):
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def clustered(rng, n, dim=32, clusters=40, noise=0.6):
    centres = unit(rng.standard_normal((clusters, dim)))
    x = centres[rng.integers(clusters, size=n)] + noise * rng.standard_normal((n, dim)) / dim**.5
    return unit(x)


def exact(stored, queries, k=10):
    return np.argsort(-(queries @ stored.T), axis=1)[:, :k]



def test_search_returns_the_attempts_whose_situations_are_nearest(store):
    basis = np.eye(DIM, dtype=np.float32)
    index = SituationIndex.open(store, "enc", DIM)
    assert index.add([100 + i for i in range(8)], basis[:8]) == list(range(8))
    query = unit(0.9 * basis[3] + 0.3 * basis[5])
    found = index.search(query, k=3)
    assert [a for a, _ in found[:2]] == [103, 105]
    assert [s for _, s in found] == pytest.approx([0.9 / 0.9**.5, 0.3 / 0.9**.5, 0.0],
                                                  abs=2e-3)
    assert len(index.search(query, k=50)) == 8  # no more than are stored
    many = index.search_many(np.stack([basis[1], basis[6]]), k=1)
    assert [[a for a, _ in hits] for hits in many] == [[101], [106]]
    assert not index.approximate


def test_similar_reads_the_attempts_of_a_recorded_run(recorded_run, copy_store, tmp_path):
    """Each attempt indexed by the embedding of its first frame, as the loop would."""
    from cairn.experience.episodes import load_episode

    ClipEncoder = pytest.importorskip("cairn.perception.clip").ClipEncoder
    pytest.importorskip("open_clip")
    encoder = ClipEncoder(f"local-dir:{tiny_clip_folder(tmp_path / 'tiny')}")
    attempts, frames = [], []
    for directory in recorded_run.episodes:
        episode = load_episode(directory)
        attempts += episode.attempts
        frames += [episode.frames[t.step_start] for t in episode.attempts]
    vectors = encoder.encode_frames(frames)
    path = copy_store(recorded_run.store, tmp_path / "copy.sqlite")
    with ExperienceStore(path) as store, \
            SituationIndex.open(store, encoder.name, encoder.dim) as index:
        index.add([t.id for t in attempts], vectors)
        probe = len(attempts) // 2
        found = index.similar(encoder.embed(frames[probe]), k=5)
        assert found[0][1] == pytest.approx(1.0, abs=2e-3)
        same_screen = {t.id for t, v in zip(attempts, vectors, strict=True)
                       if v @ vectors[probe] > 0.999}
        assert found[0][0].id in same_screen and attempts[probe].id in same_screen
        top, by_id = found[0][0], {t.id: t for t in attempts}
        assert (top.episode, top.step_start) == (by_id[top.id].episode, by_id[top.id].step_start)
        assert [score for _, score in found] == sorted((s for _, s in found), reverse=True)


def test_the_index_persists_across_reopening(store, caplog):
    rng = np.random.default_rng(0)
    x = unit(rng.standard_normal((50, DIM)))
    with SituationIndex.open(store, "enc", DIM) as index:
        index.add(np.arange(50) * 2, x)
        before = index.search(x[7], k=5)
    assert index.path.exists() and not list(index.path.parent.glob("*.tmp"))
    with caplog.at_level(logging.WARNING):
        again = SituationIndex.open(store, "enc", DIM)
    assert not caplog.records  # read as saved, not rebuilt
    assert len(again) == 50 and again.search(x[7], k=5) == before
    assert before[0] == (14, pytest.approx(1.0, abs=2e-3))


def test_another_encoder_or_size_is_refused_naming_both(store):
    SituationIndex.open(store, "ViT-B-32@openai", 512).close()
    with pytest.raises(SituationIndexError, match=r"'ViT-B-32@openai' \(512-d\), not "
                                                  r"'ViT-S-32@random' \(384-d\)"):
        SituationIndex.open(store, "ViT-S-32@random", 384)
    with pytest.raises(StoreError, match=r"\(512-d\), not 'ViT-B-32@openai' \(768-d\)"):
        SituationIndex.open(store, "ViT-B-32@openai", 768)


def test_past_the_threshold_the_index_is_approximate_and_keeps_recall(store):
    rng = np.random.default_rng(1)
    stored, queries = clustered(rng, 3000), clustered(rng, 200)
    index = SituationIndex.open(store, "enc", 32, approx_from=1000)
    index.add(np.arange(900), stored[:900])
    assert not index.approximate
    index.add(np.arange(900, 3000), stored[900:])  # crosses the threshold within one batch
    assert index.approximate and len(index) == 3000
    truth = exact(stored, queries)
    found = index.search_many(queries, k=10)
    recall = np.mean([len({a for a, _ in hits} & set(row)) / 10
                      for hits, row in zip(found, truth, strict=True)])
    assert recall >= 0.95
    index.close()
    again = SituationIndex.open(store, "enc", 32, approx_from=1000)
    assert again.approximate and again.search_many(queries[:20]) == found[:20]


@pytest.mark.parametrize("damage", ["truncated", "flipped", "missing", "foreign"])
def test_a_damaged_sidecar_is_rebuilt_from_the_store(store, tmp_path, caplog, damage):
    rng = np.random.default_rng(2)
    x = unit(rng.standard_normal((300, DIM)))
    with SituationIndex.open(store, "enc", DIM, approx_from=100) as index:
        index.add(np.arange(300), x)
        before = index.search_many(x[:10], k=5)
    data = index.path.read_bytes()
    if damage == "truncated":
        index.path.write_bytes(data[:len(data) // 2])
    elif damage == "flipped":
        index.path.write_bytes(data[:5000] + bytes([data[5000] ^ 0xFF]) + data[5001:])
    elif damage == "missing":
        index.path.unlink()
    else:  # the sidecar of another store with as many vectors
        with ExperienceStore(tmp_path / "other.sqlite") as other, \
                SituationIndex.open(other, "enc", DIM, approx_from=100) as foreign:
            foreign.add(np.arange(300), unit(rng.standard_normal((300, DIM))))
        foreign.path.replace(index.path)
    with caplog.at_level(logging.WARNING):
        again = SituationIndex.open(store, "enc", DIM, approx_from=100)
    assert "rebuilding it from the 300 vectors" in caplog.text
    assert again.approximate and again.search_many(x[:10], k=5) == before
    again.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        SituationIndex.open(store, "enc", DIM, approx_from=100)
    assert not caplog.records  # the rebuilt sidecar was saved


def test_vectors_stored_after_the_last_save_are_caught_up(store):
    rng = np.random.default_rng(3)
    x = unit(rng.standard_normal((20, DIM)))
    index = SituationIndex.open(store, "enc", DIM)
    index.add(np.arange(10), x[:10])
    index.save()
    index.add(np.arange(10, 20), x[10:])  # then the run is killed: no save
    again = SituationIndex.open(store, "enc", DIM)
    assert len(again) == 20 and again.search(x[15], k=1)[0][0] == 15


def test_two_connections_to_one_store_add_and_find_each_others_vectors(tmp_path):
    basis = np.eye(DIM, dtype=np.float32)
    with ExperienceStore(tmp_path / "s.sqlite") as one, \
            ExperienceStore(tmp_path / "s.sqlite") as two:
        first = SituationIndex.open(one, "enc", DIM)
        second = SituationIndex.open(two, "enc", DIM)
        assert first.add([1, 2, 3], basis[:3]) == [0, 1, 2]
        assert second.add([4, 5], basis[3:5]) == [3, 4]  # after the first's, not over them
        assert first.search(basis[4], k=1)[0][0] == 5
        assert first.add([6], basis[5]) == [5]
        assert second.search(basis[0], k=1)[0][0] == 1
        assert second.search(basis[5], k=1)[0][0] == 6


def test_a_read_only_store_is_searched_but_not_written(tmp_path):
    path = tmp_path / "s.sqlite"
    with ExperienceStore(path) as store:
        pass
    with ExperienceStore(path, writable=False) as store, \
            pytest.raises(SituationIndexError, match="has no situation index yet"):
        SituationIndex.open(store, "enc", DIM)
    with ExperienceStore(path) as store, SituationIndex.open(store, "enc", DIM) as index:
        index.add([7], np.eye(DIM, dtype=np.float32)[0])
    with ExperienceStore(path, writable=False) as store:
        index = SituationIndex.open(store, "enc", DIM)
        assert index.search(np.eye(DIM)[0], k=1)[0][0] == 7
        with pytest.raises(SituationIndexError, match="opened read-only"):
            index.add([8], np.eye(DIM, dtype=np.float32)[1])


def test_bad_vectors_are_refused_and_nothing_is_stored(store):
    index = SituationIndex.open(store, "enc", DIM)
    with pytest.raises(ValueError, match=r"must be \(N, 16\)"):
        index.add([1], np.ones((1, 8)))
    with pytest.raises(ValueError, match="non-zero"):
        index.add([1, 2], np.zeros((2, DIM)))
    with pytest.raises(ValueError, match="2 attempt ids for 1 vectors"):
        index.add([1, 2], np.ones((1, DIM)))
    with pytest.raises(ValueError, match="one vector"):
        index.search(np.ones((2, DIM)))
    assert len(index) == 0
    with closing(sqlite3.connect(store.path)) as conn:
        assert conn.execute("SELECT count(*) FROM situations").fetchone()[0] == 0
