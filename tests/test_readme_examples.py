"""README's console examples are produced by the code: each `$ command` in a ```console block
is run and must print exactly the lines shown under it.

When the output changes on purpose (the parser gains a field, say), regenerate every example
with one command, then review the diff:

    python -m tests.test_readme_examples --update

Commands run in bash from the repository root, with `haproxy-receiver` standing for
`python -m receiver` of the interpreter running the tests (so the checkout's code answers).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass

from tests.support import REPO

README = REPO / "README.md"
BLOCK = re.compile(r"^```console\n(.*?)^```\n", re.DOTALL | re.MULTILINE)
PROMPT = "$ "


@dataclass(frozen=True)
class Example:
    command: str
    shown: str  # the lines under the command, up to the next command or the block's end


def examples(readme: str) -> list[Example]:
    found = []
    for block in BLOCK.finditer(readme):
        for chunk in re.split(r"^(?=\$ )", block[1], flags=re.MULTILINE):
            if chunk:
                command, _, shown = chunk.partition("\n")
                assert command.startswith(PROMPT), f"console block text before any command: {chunk!r}"
                found.append(Example(command.removeprefix(PROMPT), shown))
    return found


def run(command: str) -> str:
    alias = 'haproxy-receiver() { "$README_PYTHON" -m receiver "$@"; }\n'
    done = subprocess.run(["bash", "-c", alias + command], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "README_PYTHON": sys.executable})
    assert done.returncode == 0, f"{command}\nexited {done.returncode}: {done.stderr}"
    return done.stdout


def regenerated(readme: str) -> str:
    """README with every console block's outputs replaced by what its commands print now."""
    def block(match: re.Match[str]) -> str:
        lines = [PROMPT + example.command + "\n" + run(example.command)
                 for example in examples(match[0])]
        return "```console\n" + "".join(lines) + "```\n"
    return BLOCK.sub(block, readme)


def test_readme_shows_parse_examples() -> None:
    commands = [example.command for example in examples(README.read_text())]
    assert sum("haproxy-receiver parse" in command for command in commands) >= 2, commands


def test_every_console_example_prints_what_the_readme_shows() -> None:
    stale = [example.command for example in examples(README.read_text())
             if run(example.command) != example.shown]
    assert not stale, (
        "README examples differ from the real output; regenerate them with "
        f"`python -m tests.test_readme_examples --update`: {stale}")


def main() -> int:
    parser = argparse.ArgumentParser(description="Check or regenerate README's console examples.")
    parser.add_argument("--update", action="store_true", help="rewrite the outputs in README.md")
    args = parser.parse_args()
    text = README.read_text()
    fresh = regenerated(text)
    if args.update:
        README.write_text(fresh)
        print("README.md examples", "regenerated" if fresh != text else "already up to date")
        return 0
    print("README.md examples", "are stale (run with --update)" if fresh != text else "are up to date")
    return int(fresh != text)


if __name__ == "__main__":
    raise SystemExit(main())
