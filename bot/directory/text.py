"""Text normalisation shared by the index and the queries.

Both sides of a comparison must be normalised the same way, or a perfect match scores badly,
so every rule lives here: lower-casing and punctuation stripping (rapidfuzz's
`default_process`), dropping apostrophes first so "St George's" and "st georges" agree,
removing words that say nothing about *which* service is meant ("the", "ltd", "hospital",
"care home" ...), and recognising UK postcodes. The regulator's own search ignores the same
kind of words and strips spaces from postcodes (see shared/mission/real-form-notes.md).
"""

from __future__ import annotations

import re

from rapidfuzz import fuzz, utils

#: Words that appear in thousands of names and so cannot tell services apart. Removed from
#: names and queries before fuzzy comparison. Kept small on purpose: "dental", "medical",
#: "surgery" or "house" do help to tell a practice from the care home next door.
STOP_WORDS: frozenset[str] = frozenset(
    {
        "the", "and", "of", "at", "a", "an", "in", "for", "t",
        "ltd", "limited", "plc", "llp", "cic", "inc", "co", "uk",
        "hospital", "hospitals", "service", "services",
    }
)  # fmt: skip

#: Multi-word phrases removed as a whole (a lone "care" or "home" still counts:
#: "Bluebird Care" and "Home Instead" are names).
STOP_PHRASES: tuple[str, ...] = (
    "care home",
    "care homes",
    "nursing home",
    "nursing homes",
    "residential home",
    "residential care home",
    "rest home",
    "trading as",
)

#: Words that describe the *kind* of service. People add them whether or not the name has
#: them ("Springfield House surgery"), so when one is not in a candidate's name it costs
#: only a little, instead of counting as a word that does not fit.
GENERIC_WORDS: frozenset[str] = frozenset(
    {
        "surgery", "practice", "practise", "medical", "centre", "center", "clinic",
        "dental", "dentist", "dentists", "dentistry", "doctor", "doctors", "gp", "gps",
        "health", "healthcare", "care", "carehome", "carers", "home", "homes", "homecare",
        "nursing", "residential", "unit", "ward", "hospice", "agency", "team",
        "scan", "scans", "scanning", "screening", "diagnostic", "diagnostics", "xray",
    }
)  # fmt: skip

#: Conversation, not names: dropped from queries only (a name may still contain "help").
CHAT_WORDS: frozenset[str] = frozenset(
    {
        "hi", "hello", "hey", "help", "thanks", "thank", "you", "yes", "no", "ok", "okay",
        "please", "dont", "don", "know", "not", "sure", "unsure", "idk", "none", "nothing",
        "i", "im", "my", "me", "mum", "mums", "dad", "dads", "it", "was", "is", "near",
    }
)  # fmt: skip

#: A misspelt stop word ("hospitl", "limted") is dropped too when it is at least this close.
FUZZY_STOP_CUTOFF = 85.0

_APOSTROPHES = re.compile(r"['\u2019\u2018`]")
_PHRASES = re.compile(r"\b(?:" + "|".join(re.escape(p) for p in STOP_PHRASES) + r")\b")
#: A full UK postcode in normalised text, with or without the space ("ol1 2jh", "ol12jh").
FULL_POSTCODE = re.compile(r"\b([a-z]{1,2}[0-9][a-z0-9]?) ?([0-9][a-z]{2})\b")
#: An outward code on its own ("ol1", "m35", "sw1a").
OUTWARD_CODE = re.compile(r"^[a-z]{1,2}[0-9][a-z0-9]?$")


def normalise(text: str) -> str:
    """Lower-case, drop apostrophes, turn other punctuation into spaces, collapse spaces."""
    return " ".join(str(utils.default_process(_APOSTROPHES.sub("", text))).split())


def core_tokens(normalised: str) -> list[str]:
    """The distinctive words of already-normalised text (stop words and phrases removed)."""
    return [t for t in _PHRASES.sub(" ", normalised).split() if t not in STOP_WORDS]


def is_fuzzy_stop_word(token: str) -> bool:
    """True for a misspelt stop word such as "hospitl" (only tokens of 5+ letters)."""
    if len(token) < 5 or token.isdigit():
        return False
    return any(
        fuzz.ratio(token, word, score_cutoff=FUZZY_STOP_CUTOFF) > 0
        for word in STOP_WORDS
        if len(word) >= 5
    )


def normalise_postcode(postcode: str) -> str:
    """Upper-case with all whitespace removed, the key postcodes are compared on."""
    return "".join(postcode.split()).upper()


def outward_code(compact_postcode: str) -> str:
    """The outward half of a compact postcode ("OL12JH" -> "OL1"); "" when too short."""
    return compact_postcode[:-3] if len(compact_postcode) >= 5 else ""


def display_postcode(postcode: str) -> str:
    """A postcode in its usual written form ("ol12jh" -> "OL1 2JH"); other text is kept."""
    compact = normalise_postcode(postcode)
    if len(compact) >= 5 and FULL_POSTCODE.fullmatch(f"{compact[:-3]} {compact[-3:]}".lower()):
        return f"{compact[:-3]} {compact[-3:]}"
    return " ".join(postcode.split()).upper()
