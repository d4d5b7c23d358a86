import pytest

from cairn.experience.store import ExperienceStore


def test_a_changed_entry_is_a_new_version_and_the_history_stays(tmp_path):
    with ExperienceStore(tmp_path / "k.sqlite") as store:
        k = store.knowledge
        assert k.put("guardrail", "g1", "active", {"x": 1}, subgoal="use:a") == 1
        assert k.put("guardrail", "g1", "active", {"x": 1}, subgoal="use:a") == 1
        assert k.put("guardrail", "g1", "active", {"x": 2}, subgoal="use:a") == 2
        assert k.put("skill", "s1", "active", {"y": 1}) == 1
        assert [e.body for e in k.history("guardrail", "g1")] == [{"x": 1}, {"x": 2}]
        assert [(e.key, e.version) for e in k.current("guardrail")] == [("g1", 2)]
        disabled = k.set_status("guardrail", "g1", "disabled")
        assert (disabled.version, disabled.status) == (3, "disabled")
    with ExperienceStore(tmp_path / "k.sqlite") as store:  # a new process sees the same
        assert store.knowledge.get("guardrail", "g1").status == "disabled"
        with pytest.raises(KeyError):
            store.knowledge.set_status("guardrail", "nope", "active")


def test_statistics_alone_update_the_current_version_in_place(tmp_path):
    with ExperienceStore(tmp_path / "k.sqlite") as store:
        k = store.knowledge
        ident = ("rule",)
        assert k.put("skill", "s", "active", {"rule": "a", "n": 1}, identity=ident) == 1
        assert k.put("skill", "s", "active", {"rule": "a", "n": 2}, identity=ident) == 1
        assert k.get("skill", "s").body["n"] == 2
        assert k.put("skill", "s", "active", {"rule": "b", "n": 2}, identity=ident) == 2
        assert k.put("skill", "s", "demoted", {"rule": "b", "n": 2}, identity=ident) == 3
        assert [e.body["rule"] for e in k.history("skill", "s")] == ["a", "b", "b"]
