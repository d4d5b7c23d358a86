"""The highest world seed each run name played, kept in the store."""

import pytest

from cairn.experience.store import ExperienceStore, StoreError


def test_the_highest_seed_is_kept_per_run_name_across_opens(tmp_path):
    path = tmp_path / "s.sqlite"
    with ExperienceStore(path) as store:
        assert store.seeds.last("a") is None
        for seed in (3, 11, 4):
            store.seeds.add("a", seed)
        store.seeds.add("b", 2)
    with ExperienceStore(path, writable=False) as store:
        assert (store.seeds.last("a"), store.seeds.last("b"), store.seeds.last("c")) == \
            (11, 2, None)
        with pytest.raises(StoreError, match="read-only"):
            store.seeds.add("a", 12)
