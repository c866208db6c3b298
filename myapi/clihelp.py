"""Click help that reads well: a group lists each command's whole first sentence.

Click shortens a command's summary in its group's list to what fits on one
line and ends it with "...", which cut sentences in half ("Upload a CSV...").
:class:`HelpGroup` gives the whole first sentence (or the ``short_help``),
wrapped like any other help text. Every group of ``myapi`` is one.
"""

from __future__ import annotations

import click

#: As long as a first sentence gets: never cut.
NO_LIMIT = 10_000


class HelpGroup(click.Group):
    """A click Group whose command list never cuts a summary; its subgroups are HelpGroups too."""

    group_class = type  # @group.group() makes one of this same class

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(NO_LIMIT)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
