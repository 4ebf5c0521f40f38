"""The conversations the bot can hold, as data (steps, choices, branches, words)."""
