"""The languages offered: English, Welsh, and the ten most common main languages other than
English in England (2021 Census). Each is named in itself, so a person finds their own."""

from __future__ import annotations

LANGUAGES: tuple[tuple[str, str], ...] = (
    ("en", "English"),
    ("cy", "Cymraeg"),
    ("pl", "Polski"),
    ("ro", "Română"),
    ("pa", "ਪੰਜਾਬੀ"),
    ("ur", "اردو"),
    ("pt", "Português"),
    ("es", "Español"),
    ("ar", "العربية"),
    ("bn", "বাংলা"),
    ("gu", "ગુજરાતી"),
    ("it", "Italiano"),
)

#: Written right to left; channels set `dir="rtl"` for these.
RTL_LOCALES: frozenset[str] = frozenset({"ur", "ar"})
