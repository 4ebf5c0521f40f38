"""Cleaning and folding typed text: what is stored, and how it is compared.

Stored text is exactly what was typed apart from what is dangerous to store or show: C0/C1
control characters (PostgreSQL refuses NUL; others garble logs and exports) and the bidi
embedding, override and isolate controls, which can make text read differently from what it
is when staff look at it. Zero-width joiners and non-joiners stay: they are part of correct
Bengali, Urdu and Persian spelling and of emoji sequences. Text is NOT normalised to NFC:
"exactly as typed" wins; matching folds both sides instead (`fold`).
"""

from __future__ import annotations

import re
import unicodedata

#: C0 controls except tab and newline (handled first), DEL, C1 controls, and the bidi
#: embedding/override (U+202A-U+202E) and isolate (U+2066-U+2069) controls.
_DANGEROUS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_BLANK_LINES = re.compile(r"\n{3,}")


def strip_dangerous(raw: str) -> str:
    """Only the dangerous characters removed; for values that are not typed prose (button
    data, command names), which must otherwise reach the engine unchanged."""
    return _DANGEROUS.sub("", raw)


def clean_text(raw: str) -> str:
    """Typed text as it is stored: line ends made `\\n`, tabs made spaces, dangerous
    characters removed, at most one blank line in a row, no surrounding whitespace. Markup
    is kept verbatim: it is data, never interpreted."""
    text = raw.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    text = _BLANK_LINES.sub("\n\n", strip_dangerous(text))
    return text.strip()


_NOT_WORD = re.compile(r"[\W_]+")


def fold(text: str) -> str:
    """Typed text folded for matching against labels and command words: case, accents,
    joiners and punctuation ignored."""
    if text.isascii():
        # The same result without the walk: ASCII has no accents, joiners or compatibility
        # forms, so NFKD changes nothing and casefold is lower (every command word and most
        # answers and labels take this way).
        return _NOT_WORD.sub(" ", text.lower()).strip()
    folded = unicodedata.normalize("NFKD", text.casefold())
    folded = "".join(
        ch for ch in folded if not unicodedata.combining(ch) and unicodedata.category(ch) != "Cf"
    )
    return _NOT_WORD.sub(" ", folded).strip()
