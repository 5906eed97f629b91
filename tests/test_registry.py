"""One registry for everything chosen by name: lookups, errors and help texts all come from it, so they agree."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from infertune.cli import app
from infertune.registry import Registry


def test_registry_lookup_split_and_errors():
    reg: Registry[int] = Registry("widget")
    reg.register("a", 1)
    reg.register("b", 2, argument="=PATH")

    @reg.register("c")
    def c():
        return 3

    assert reg.get("a") == 1 and reg.get("b=/x:y") == 2 and reg.get("c") is c
    assert Registry.split("rm=/p:q") == ("rm", "/p:q") and Registry.split("bon:learned") == ("bon", "learned")
    assert reg.names() == ["a", "b", "c"] and reg.describe() == "a, b=PATH, c"
    with pytest.raises(ValueError, match=r"unknown widget 'z'; known: a, b=PATH, c"):
        reg.get("z")
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a", 5)


def _help_names(command: str, option: str) -> set[str]:
    text = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "400", "NO_COLOR": "1"}).output
    line = " ".join(text.split())  # rich wraps help text; join it back
    start = line.index(option)
    return set(re.findall(r"[a-z][a-z0-9_-]+(?:=PATH|:<[a-z]+>)?", line[start + len(option):].split("[default")[0]))


@pytest.mark.parametrize("command, option, bad, registry", [
    ("train", "--objective", "nosuch", "infertune.objectives:OBJECTIVES"),
    ("eval", "--executor", "nosuch", "infertune.executors:EXECUTORS"),
    ("eval", "--backend", "nosuch", "infertune.models.loading:BACKENDS"),
])
def test_help_and_errors_list_the_same_names(command, option, bad, registry):
    module, name = registry.split(":")
    names = set(getattr(__import__(module, fromlist=[name]), name).names())
    helped = _help_names(command, option)
    assert names <= helped, (names - helped)
    result = CliRunner().invoke(app, [command, option, bad], env={"COLUMNS": "400"})
    assert result.exit_code != 0
    listed = set(re.findall(r"[a-z][a-z0-9_-]+", " ".join(result.output.split()).split("known:")[1]))
    assert names <= listed, (names - listed)


def test_every_verifier_and_task_name_is_documented_in_help():
    from infertune.tasks import TASKS
    from infertune.verify import VERIFIERS

    eval_help = " ".join(CliRunner().invoke(app, ["eval", "--help"], env={"COLUMNS": "400"}).output.split())
    for name in VERIFIERS.names():
        assert name in eval_help
    for name in TASKS.names():
        assert name in eval_help
