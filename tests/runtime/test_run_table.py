"""The lines under ``cairn run``'s table: how the score moved, what the store holds."""

from cairn.envs.game import make_game
from cairn.experience.store import ExperienceStore
from cairn.runtime.run_table import Trend, holdings, holdings_line, score_trend

WOOD, TABLE, DRINK = "collect_wood", "place_table", "collect_drink"


def test_the_trend_scores_the_first_third_against_the_last_third():
    score = make_game("crafter", {}).score
    # Eight episodes: thirds of two; the middle four, the best, must not count.
    reached = [set(), {WOOD}, {WOOD, TABLE, DRINK}, {WOOD, TABLE, DRINK}, {WOOD, TABLE, DRINK},
               {WOOD, TABLE, DRINK}, {WOOD, TABLE}, {WOOD}]
    trend = score_trend(reached, score)
    assert trend == Trend("Crafter score", score([set(), {WOOD}]).value,
                          score([{WOOD, TABLE}, {WOOD}]).value, 2)
    assert 0 < trend.first < trend.last < score(reached[2:6]).value
    assert trend.line() == (f"Crafter score rose from {trend.first:.2f} over the first 2 "
                            f"episodes to {trend.last:.2f} over the last 2")
    assert score_trend(reached[:2], score) is None  # fewer than three episodes: no thirds


def test_the_trend_says_fell_and_stayed_in_words():
    assert Trend("score", 2.5, 1.0, 1).line() == \
        "score fell from 2.50 over the first episode to 1.00 over the last one"
    assert Trend("score", 1.001, 0.999, 4).line() == \
        "score stayed at 1.00 from the first 4 episodes to the last 4"


def test_the_store_line_counts_what_is_held_and_what_the_run_added(tmp_path):
    with ExperienceStore(tmp_path / "s.sqlite") as store:
        knowledge = store.knowledge
        knowledge.put("skill", "a", "active", {"n": 1})
        before = holdings(store)
        knowledge.put("skill", "b", "demoted", {"n": 2})
        knowledge.put("skill", "a", "demoted", {"n": 3})  # a new version, not a new skill
        knowledge.put("guardrail", "g", "candidate", {"n": 4})
        after = holdings(store)
    assert holdings_line(before, after) == (
        "the store now holds 0 attempts, 2 skills (2 demoted), 1 guardrail (1 candidate); "
        "this run added 0 attempts, 1 skill, 1 guardrail")
