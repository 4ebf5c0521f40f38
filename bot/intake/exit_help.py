"""What the quick exit (`exit`) does, and does not, hide in each channel.

The engine says the same thing everywhere; what leaving can wipe differs by channel (a
browser page, a Telegram chat, a terminal window), so the per-channel facts live here and
reach the engine's help through `Needs.exit_help`. Each text names the exit word as `{exit}`
(filled with the person's own word) and says plainly what stays: a person deciding whether
it is safe to write needs to know the limits, not a promise.
"""

from __future__ import annotations

from bot.engine.types import T, Text
from bot.ports import Channel

EXIT_HELP: dict[Channel, Text] = {
    # The widget: its "Exit this page" button and Shift x3 (bot/static/chat.js) replace the
    # page; typing the word does the same and also closes the conversation on the server.
    "web": T(
        'To leave at once, choose "Exit this page" or press Shift 3 times: this page is '
        "replaced by another website. Typing {exit} does the same, and also closes the chat "
        "so that we keep nothing you told us. Neither deletes your browser history, and "
        "neither can hide what someone already saw."
    ),
    # Telegram: the bot may delete messages under 48 hours old (Bot API deleteMessages), in
    # this chat only; it cannot clear notifications or other devices, or delete the chat.
    "telegram": T(
        "To leave at once, type {exit}. We close the chat, keep nothing you told us, and "
        "delete this chat's messages (yours and ours) that are less than 48 hours old. It "
        "cannot remove notifications already shown, copies on your other devices until they "
        "update, or what someone already saw. To remove the chat itself, delete it in "
        "Telegram too."
    ),
    # The terminal: ANSI "clear screen and scrollback" (bot/channels/terminal.py).
    "terminal": T(
        "To leave at once, type {exit}. We close the chat, keep nothing you told us, and "
        "clear this window and its scrollback. It cannot clear your shell's history, logs or "
        "recordings of this terminal, or what someone already saw."
    ),
}


def exit_help(channel: Channel) -> Text | None:
    """The channel's note on the quick exit, said after the general help."""
    return EXIT_HELP.get(channel)
