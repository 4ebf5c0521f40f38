"""The intake team's vocabulary: statuses and the moves between them, categories, clocks."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

STATUSES: dict[str, str] = {
    "new": "New",
    "triaged": "Triaged",
    "referred_police": "Referred to police",
    "referred_council": "Referred to council",
    "actioned": "Actioned",
    "closed": "Closed",
}

#: new → triaged → referred to police or council → actioned → closed; a closed case can be
#: reopened (back to triaged), and a case can be closed early (not ours, feedback only).
NEXT_STATUSES: dict[str, tuple[str, ...]] = {
    "new": ("triaged", "closed"),
    "triaged": ("referred_police", "referred_council", "actioned", "closed"),
    "referred_police": ("actioned", "closed"),
    "referred_council": ("actioned", "closed"),
    "actioned": ("closed",),
    "closed": ("triaged",),
}

CATEGORIES: dict[str, str] = {
    "safeguarding_alert": "Safeguarding alert",
    "safeguarding_concern": "Safeguarding concern",
    "whistleblowing": "Whistleblowing",
    "feedback": "Feedback",
    "complaint_signpost": "Complaint to signpost",
    "not_ours": "Not ours",
}

PRIORITIES: dict[str, str] = {
    "urgent": "Urgent",
    "urgent_review": "Urgent review",
    "routine": "Routine",
}

CHANNELS: dict[str, str] = {"web": "Web chat", "telegram": "Telegram", "terminal": "Terminal"}

LONDON = ZoneInfo("Europe/London")
#: "Same working day": an urgent report must reach a named person by the end of the working
#: day it arrived on (or the next working day's, if it arrived after hours or at a weekend).
WORKING_DAY_ENDS = time(17, 30)


def can_move(current: str, target: str) -> bool:
    return target in NEXT_STATUSES.get(current, ())


def same_working_day_deadline(received: datetime) -> datetime:
    """The end of the working day the report counts against (UK local time; bank holidays
    are not known here, so they count as working days: the deadline errs early)."""
    local = received.astimezone(LONDON)
    day = local.date()
    if local.time() >= WORKING_DAY_ENDS:
        day += timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return datetime.combine(day, WORKING_DAY_ENDS, tzinfo=LONDON).astimezone(UTC)


def describe_duration(delta: timedelta) -> str:
    minutes = int(abs(delta.total_seconds()) // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = []
    if days:
        parts.append(f"{days} day{'s' if days != 1 else ''}")
    if hours:
        parts.append(f"{hours} hour{'s' if hours != 1 else ''}")
    if not days:
        parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    return " ".join(parts)
