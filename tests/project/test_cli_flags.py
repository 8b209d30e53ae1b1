"""The settings-to-flags bridge, checked on the real `lrsa` parser: every command's --help
renders, and every boolean flag that mirrors a settings field sets the value its name says."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from lrsa.settings import _BoolFlag, add_settings_flags, settings_from_args
from lrsa_cli.main import build_parser


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(argv prefix, parser) of the parser and every command and subcommand under it."""
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*prefix, name))


PARSER = build_parser()
COMMANDS = list(_commands(PARSER))
COMMAND_IDS = [" ".join(prefix) or "lrsa" for prefix, _ in COMMANDS]


def _bool_flags():
    """(command argv prefix, option string, field) for each boolean settings flag."""
    for prefix, parser in COMMANDS:
        for action in parser._actions:
            if isinstance(action, _BoolFlag):
                for option in action.option_strings:
                    yield prefix, parser, action, option


BOOL_FLAGS = list(_bool_flags())


def _required_args(parser: argparse.ArgumentParser) -> list[str]:
    """Placeholder values for the required options and positional arguments of a command (e.g.
    `produce --file`, `consume TOPIC`)."""
    argv = []
    for action in parser._actions:
        if action.required and action.option_strings:
            argv += [action.option_strings[0], str(action.choices[0]) if action.choices else "1"]
        elif not action.option_strings and not isinstance(action, argparse._SubParsersAction) and action.nargs is None:
            argv.append(str(action.choices[0]) if action.choices else "1")
    return argv


def test_the_walk_sees_every_command():
    names = set(COMMAND_IDS)
    assert {"lrsa", "run", "train", "eval", "demo", "bench", "bench pipeline", "stack up"} <= names
    assert len(BOOL_FLAGS) >= 20  # run, train, eval, demo, bench ... have boolean settings


@pytest.mark.parametrize("prefix", [p for p, _ in COMMANDS], ids=COMMAND_IDS)
def test_help_renders(prefix):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        PARSER.parse_args([*prefix, "--help"])
    assert exit_info.value.code == 0
    assert out.getvalue().strip().startswith("usage: lrsa")
    assert "--help" in out.getvalue()
    assert "PydanticUndefined" not in out.getvalue()  # a required setting says so


def _expected(option: str, field: str) -> bool:
    """What the flag's name says: `--x` for field x sets True; its other form sets False."""
    return option[2:].replace("-", "_") == field


@pytest.mark.parametrize("prefix,parser,action,option", BOOL_FLAGS,
                         ids=[f"{' '.join(p)} {o}" for p, _, _, o in BOOL_FLAGS])
def test_bool_flag_sets_what_its_name_says(prefix, parser, action, option, monkeypatch):
    cls, field = action.settings_cls, action.dest
    env = cls.model_config.get("env_prefix", "LRSA_") + field.upper()
    monkeypatch.delenv(env, raising=False)
    args = PARSER.parse_args([*prefix, *_required_args(parser), option])
    assert getattr(settings_from_args(cls, args), field) is _expected(option, field)


@pytest.mark.parametrize("prefix,parser", COMMANDS, ids=COMMAND_IDS)
def test_each_bool_flag_has_both_forms(prefix, parser):
    for action in parser._actions:
        if isinstance(action, _BoolFlag):
            said = sorted(_expected(o, action.dest) for o in action.option_strings)
            assert said == [False, True], action.option_strings


def test_no_fields_switch_on_from_the_command_line(monkeypatch):
    """The bug of issue 18: `lrsa eval --no-rationale` set no_rationale=False."""
    from training.settings import EvalSettings, TrainSettings

    for cls, command in ((EvalSettings, "eval"), (TrainSettings, "train")):
        for flag, off_flag, field in (("--no-rationale", "--rationale", "no_rationale"),
                                      ("--no-description", "--description", "no_description")):
            assert getattr(settings_from_args(cls, PARSER.parse_args([command, flag])), field) is True
            assert getattr(settings_from_args(cls, PARSER.parse_args([command, off_flag])), field) is False
            assert getattr(settings_from_args(cls, PARSER.parse_args([command])), field) is False
    s = settings_from_args(EvalSettings, PARSER.parse_args(["eval", "--no-rationale", "--no-description"]))
    assert s.no_rationale and s.no_description


def test_env_vars_still_apply_and_a_flag_wins(monkeypatch):
    from training.settings import TrainSettings

    monkeypatch.setenv("LRSA_TRAIN_NO_RATIONALE", "1")
    assert settings_from_args(TrainSettings, PARSER.parse_args(["train"])).no_rationale is True
    assert settings_from_args(TrainSettings, PARSER.parse_args(["train", "--rationale"])).no_rationale is False
    monkeypatch.setenv("LRSA_TRAIN_NO_RATIONALE", "0")
    assert settings_from_args(TrainSettings, PARSER.parse_args(["train", "--no-rationale"])).no_rationale is True


def test_positive_bools_keep_their_flags():
    from lrsa_cli.demo import DemoSettings
    from workers.config import WorkerSettings

    assert settings_from_args(DemoSettings, PARSER.parse_args(["demo", "--no-rationale"])).rationale is False
    args = PARSER.parse_args(["run", "--rationale-enabled", "--no-score-enabled"])
    s = settings_from_args(WorkerSettings, args)
    assert (s.rationale_enabled, s.score_enabled) == (True, False)


def test_percent_in_a_description_reaches_help_escaped():
    from pydantic import Field

    from lrsa.settings import LrsaSettings

    class S(LrsaSettings):
        share: float = Field(0.5, description="busy share of slots, e.g. 75 % or 100%")
        no_thing: bool = Field(False, description="100% off")

    parser = argparse.ArgumentParser(prog="x")
    add_settings_flags(parser, S)
    text = parser.format_help()
    assert "75 % or 100%" in text and "100% off" in text
    assert settings_from_args(S, parser.parse_args(["--no-thing"])).no_thing is True
    assert settings_from_args(S, parser.parse_args(["--thing"])).no_thing is False


def test_run_help_groups_its_options_connection_first(capsys):
    """`lrsa run --help`: the options in named groups (connection first, every flag in one group,
    none left over), a description, examples and a short usage line."""
    from workers.config import WorkerSettings

    with pytest.raises(SystemExit):
        PARSER.parse_args(["run", "--help"])
    out = capsys.readouterr().out
    titles = [line[:-1] for line in out.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert titles == ["options", *WorkerSettings.FLAG_GROUPS, "examples"]
    assert out.index("--bootstrap-servers") < out.index("--kafka-security-protocol") < out.index("--score-enabled")
    assert out.splitlines()[0].startswith("usage: lrsa run [--bootstrap-servers") and len(out.splitlines()[0]) < 100
    assert "other options" not in titles
    assert out.index("--score-enabled") < out.index("--serve ") < out.index("--exactly-once")  # with the stages


def test_run_scores_by_default(monkeypatch):
    """Without flags or env, `lrsa run` runs the score stage (the suite's conftest turns it off
    for the plumbing tests; a user's environment does not)."""
    from workers.config import WorkerSettings

    monkeypatch.delenv("LRSA_SCORE_ENABLED", raising=False)
    s = settings_from_args(WorkerSettings, PARSER.parse_args(["run"]))
    assert [name for name, *_ in s.stage_settings()] == ["score"]
    assert PARSER.parse_args(["run", "--serve"]).serve is True


# Settings classes that are parts of others (mixins and bases), not a command's own settings.
SETTINGS_PARTS = {"LrsaSettings", "KafkaSecurity", "AutoscaleSettings", "ControlTokenSettings", "ControlSettings",
                  "DataSettings", "RationaleSettings"}


def test_the_configuration_reference_covers_every_commands_settings():
    """docs/configuration.md (lrsa_cli/reference.py) has a table for every settings class a
    command builds: building the parser imports them all."""
    from lrsa.settings import _settings_classes
    from lrsa_cli.main import build_parser
    from lrsa_cli.reference import SETTINGS

    build_parser()
    listed = {path.split(":")[1] for _, path in SETTINGS}
    ours = ("lrsa", "workers", "serving", "training", "dashboard")  # not a library's (quixstreams has some)
    commands = {c.__name__ for c in _settings_classes() if c.__module__.split(".")[0] in ours} - SETTINGS_PARTS
    assert commands - listed == set()
