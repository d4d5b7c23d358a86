import pytest

from cairn.runtime.config import ConfigError, load_config

from ..conftest import ROOT


def write(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_the_shipped_crafter_config_loads():
    config = load_config(ROOT / "configs" / "crafter.yaml")
    assert config.game == "crafter" and config.family == "map"
    assert config.actions.moves["move_up"] == [-1, 0]


def test_the_planner_experiments_only_where_its_attempts_are_learned_from():
    crafter = ROOT / "configs" / "crafter.yaml"
    assert load_config(crafter).experiments
    assert not load_config(crafter, {"learning": "frozen"}).experiments
    assert not load_config(crafter, {"planner.experiments": False}).experiments
    assert load_config(crafter, {"learning": "frozen", "planner.experiments": True}).experiments


MINIMAL = "game: crafter\nactions: {noop: noop, interact: do, moves: {move_up: [-1, 0]}}\n"


def test_overrides_replace_values_by_dotted_key(tmp_path):
    config = load_config(write(tmp_path, MINIMAL + "episodes: 2\n"),
                         {"seed": 5, "agent.explore_steps": 3})
    assert (config.episodes, config.seed, config.agent.explore_steps) == (2, 5, 3)


@pytest.mark.parametrize(("text", "message"), [
    ("episodez: 2\n", "unknown key 'episodez'"),
    ("agent: {max_attempt_step: 3}\n", "unknown key 'agent.max_attempt_step'"),
    ("episodes: two\n", "'episodes' must be an integer"),
    ("episodes: true\n", "'episodes' must be an integer"),
    ("actions: {moves: {move_left: left}}\n", "'actions.moves' must be a mapping"),
    ("agent: 3\n", "'agent' must be a mapping"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("episodes: [\n", "not valid YAML"),
])
def test_bad_config_names_the_key(tmp_path, text, message):
    text = text if text.startswith("- ") or "[\n" in text else MINIMAL + text
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert message in str(err.value)
    assert str(tmp_path / "run.yaml") in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(("text", "message"), [
    ("episodes: 1\n", "missing key 'game'"),
    ("game: chess\n", "unknown game 'chess'"),
    ("game: crafter\n", "missing key 'actions.noop'"),
    ("game: crafter\nactions: {noop: noop}\n", "missing key 'actions.interact'"),
    ("game: crafter\nactions: {noop: noop, interact: do}\n", "missing key 'actions.moves'"),
    (MINIMAL.replace("}}", "}, sleep: sleep}"), "missing key 'actions.sleep_tag'"),
])
def test_a_game_and_its_action_roles_must_be_declared(tmp_path, text, message):
    """No game's action names are defaults: a config that leaves out a role is told which."""
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_board_game_needs_no_map_roles(tmp_path):
    config = load_config(write(tmp_path, "game: board\n"))
    assert config.family == "board" and config.actions.interact is None


FIRST_PERSON = ("game: minetest\nactions: {noop: noop, interact: dig, moves: {forward: [1, 0]}, "
                "turns: {turn_left: [0, -1], turn_right: [0, 1], look_up: [-1, 0], "
                "look_down: [1, 0]}}\n")


@pytest.mark.parametrize(("text", "message"), [
    ("game: minetest\nactions: {noop: noop, interact: dig, moves: {forward: [1, 0]}}\n",
     "missing key 'actions.turns' (view-turning action name -> [drow, dcol]): a first-person"),
    (FIRST_PERSON.replace("look_down: [1, 0]", "look_down: [2, 0]"),
     "'actions.turns' must name the four ways the view turns"),
    (FIRST_PERSON.replace("forward: [1, 0]", "forward: [0, 1]"),
     "'actions.moves' the forward move ([1, 0])"),
])
def test_a_first_person_game_names_its_walking_and_turning_roles(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert message in str(err.value) and "\n" not in str(err.value)
    assert load_config(write(tmp_path, FIRST_PERSON)).family == "first_person"
