"""`intake staff add|disable|reset`: staff accounts from the server's command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from bot.config import Settings
from bot.staff.accounts import (
    AccountError,
    EnrolmentLink,
    add_account,
    disable_account,
    reset_account,
)
from bot.staff.config import StaffSettings
from storage.staff import ROLES, StaffStore


def add_commands(sub: Any) -> None:
    staff = sub.add_parser("staff", help="staff accounts for the /staff/ web application")
    commands = staff.add_subparsers(title="staff commands")
    add = commands.add_parser("add", help="create an account and print its one-time set-up link")
    add.add_argument("username")
    add.add_argument("--name", required=True, help="the person's full name")
    add.add_argument("--role", choices=ROLES, default="officer")
    add.set_defaults(handler=lambda s, a: asyncio.run(_run(s, a, "add")))
    disable = commands.add_parser("disable", help="disable an account; its sessions end at once")
    disable.add_argument("username")
    disable.set_defaults(handler=lambda s, a: asyncio.run(_run(s, a, "disable")))
    reset = commands.add_parser(
        "reset", help="forget the password and security app; print a new set-up link"
    )
    reset.add_argument("username")
    reset.set_defaults(handler=lambda s, a: asyncio.run(_run(s, a, "reset")))


async def _run(settings: Settings, args: argparse.Namespace, command: str) -> int:
    from storage.engine import create_engine
    from storage.migrate import upgrade

    staff_settings = StaffSettings.from_env()
    await upgrade(settings.database_url)
    engine = create_engine(settings.database_url, pool_size=1)
    store = StaffStore(engine)
    link: EnrolmentLink | None = None
    try:
        async with store.transaction() as tx:
            if command == "add":
                link = await add_account(
                    tx,
                    staff_settings,
                    username=args.username,
                    display_name=args.name,
                    role=args.role,
                    by=None,
                )
            elif command == "reset":
                link = await reset_account(tx, staff_settings, username=args.username, by=None)
            else:
                await disable_account(tx, username=args.username, by=None)
    except AccountError as error:
        print(str(error), file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
    if link is None:
        print(f"{args.username} is disabled; every session of the account has ended")
    else:
        print(
            f"One-time set-up link for {link.username} (works once, for {link.expires_in_hours} hours):\n"
            f"{link.url}\n"
            "Give it to the person by a trusted route; it is not shown again."
        )
    return 0
