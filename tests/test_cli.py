"""The command line as an operator meets it: `--version`, help without type labels, shell
completion of commands, options and allowed values."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from receiver import __version__
from receiver.cli import app
from tests.support import REPO

COMMANDS = [[], ["run"], ["check-config"], ["config-reference"], ["version"], ["parse"], ["setup"],
            ["status"], ["spool"], ["spool", "stats"], ["spool", "dump"], ["test"],
            ["test", "output"], ["export"], ["import"]]


def test_version_option_and_command() -> None:
    runner = CliRunner()
    for args in (["--version"], ["version"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and result.output == f"haproxy-receiver {__version__}\n"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_help_names_values_without_type_labels(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output and "<str>" not in result.output and "list[" not in result.output
    assert "<path>" not in result.output and "<" not in result.output.replace("<PRI>", "")
    if command == ["run"]:
        assert "--udp HOST:PORT" in result.output and "--log-format FORMAT" in result.output


def complete(words: str) -> list[str]:
    """What bash completion offers for the last word of `words` (as the installed script asks)."""
    env = {**os.environ, "_HAPROXY_RECEIVER_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))}
    code = "import sys; sys.argv[0] = 'haproxy-receiver'; from receiver.cli import main; main()"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                            env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_shell_completion_of_commands_options_and_allowed_values() -> None:
    assert complete("haproxy-receiver sta") == ["status"]
    assert "--watch" in complete("haproxy-receiver status --")
    assert complete("haproxy-receiver run --log-format ") == ["text", "json"]
    assert complete("haproxy-receiver run --log-level w") == ["warning"]
