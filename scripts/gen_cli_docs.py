"""Write ``docs/cli.md``: the ``--help`` of every ``batchrunner`` command, so the reference cannot drift.

::

    .venv/bin/python scripts/gen_cli_docs.py            # (re)write docs/cli.md
    .venv/bin/python scripts/gen_cli_docs.py --check    # exit 1, saying so, if docs/cli.md is not current

Each command's help is rendered by click itself, exactly as ``batchrunner COMMAND --help`` prints it in an
80-column terminal: the width is fixed here, so the output does not depend on the terminal, ``COLUMNS`` or
the environment (``tests/test_cli_docs.py`` checks that, and that the file is current).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from batchrunner.cli import main as batchrunner_command

ROOT = Path(__file__).resolve().parent.parent
CLI_MD = ROOT / "docs" / "cli.md"
REGENERATE = ".venv/bin/python scripts/gen_cli_docs.py"
"""The command that rewrites the file, named in every message about a stale one."""

TERMINAL_COLUMNS = 80
HELP_WIDTH = TERMINAL_COLUMNS - 2
"""What click formats for an 80-column terminal (it leaves two columns free)."""

HEADER = f"""\
# Command line reference

Every command's `--help`, as it prints in an 80-column terminal. Generated from the commands
themselves by `scripts/gen_cli_docs.py`: do not edit it by hand. After changing a command,
regenerate it with `{REGENERATE}`; `tests/test_cli_docs.py` fails while it
is stale.
"""


def commands(
    command: click.Command, ctx: click.Context | None = None, name: str = "batchrunner"
) -> Iterator[tuple[click.Command, click.Context]]:
    """``command`` and, for a group, each of its subcommands in the order ``--help`` lists them."""
    settings = dict(command.context_settings)  # as click's make_context applies them (-h, --help)
    if ctx is None:
        settings.update(terminal_width=HELP_WIDTH, max_content_width=HELP_WIDTH)
    ctx = click.Context(command, info_name=name, parent=ctx, **settings)
    yield command, ctx
    if isinstance(command, click.Group):
        for sub_name in command.list_commands(ctx):
            sub = command.get_command(ctx, sub_name)
            if sub is not None and not sub.hidden:
                yield from commands(sub, ctx, sub_name)


def _anchor(path: str) -> str:
    """The anchor GitHub gives a ``## batchrunner fake-server`` heading."""
    return path.lower().replace(" ", "-")


def render() -> str:
    """The whole of ``docs/cli.md``."""
    found = list(commands(batchrunner_command))
    index = "".join(f"- [`{ctx.command_path}`](#{_anchor(ctx.command_path)})\n" for _, ctx in found)
    parts = [HEADER, index]
    for command, ctx in found:
        text = "\n".join(line.rstrip() for line in command.get_help(ctx).splitlines())
        parts.append(f"## {ctx.command_path}\n\n```text\n{text}\n```\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if the file is not current")
    parser.add_argument("--output", type=Path, default=CLI_MD, help="the file [default: docs/cli.md]")
    args = parser.parse_args(argv)
    wanted = render()
    target: Path = args.output
    if args.check:
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current != wanted:
            state = "is missing" if current is None else "is not current (it differs from the --help)"
            again = REGENERATE if target == CLI_MD else f"{REGENERATE} --output {target}"
            print(f"{target} {state}; regenerate it with: {again}", file=sys.stderr)
            return 1
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(wanted, encoding="utf-8")
    print(f"wrote {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
