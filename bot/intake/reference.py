"""Report reference numbers: short, unguessable, easy to read aloud over the phone."""

from __future__ import annotations

import secrets

#: No 0/O, 1/I/L: they are confused when read aloud or copied by hand.
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
GROUPS, GROUP_LENGTH = 2, 4  # 31**8 ≈ 8.5e11 possibilities


def new_reference() -> str:
    groups = ("".join(secrets.choice(ALPHABET) for _ in range(GROUP_LENGTH)) for _ in range(GROUPS))
    return "-".join(groups)


def normalise_reference(typed: str) -> str:
    """What staff type (lower case, spaces, a missing dash) to the stored form."""
    compact = "".join(ch for ch in typed.upper() if ch.isalnum())
    if len(compact) != GROUPS * GROUP_LENGTH:
        return typed.strip().upper()
    return "-".join(compact[i : i + GROUP_LENGTH] for i in range(0, len(compact), GROUP_LENGTH))
