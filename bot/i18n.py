"""Rendering `Text` in a person's language with gettext catalogs managed by Babel.

The `.po` files in `locales/` are the source of truth. They are compiled in memory when the
process starts, so a compiled catalog can never be stale. Fuzzy entries are not used.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations

from bot.engine.types import Text

log = logging.getLogger(__name__)

DEFAULT_LOCALE = "en"
LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "messages"
#: Far more than the catalogs' messages in every language: a bound, never reached in use.
_PLAIN_CACHE_SIZE = 50_000


class Catalogs:
    """All catalogs of one process, loaded once; rendering is a dictionary look-up."""

    def __init__(
        self,
        locales_dir: Path = LOCALES_DIR,
        *,
        offered: Iterable[str] | None = None,
        rtl: Iterable[str] = (),
        globals_: Mapping[str, str] | None = None,
    ) -> None:
        self._translations: dict[str, NullTranslations] = {DEFAULT_LOCALE: NullTranslations()}
        for po_path in sorted(locales_dir.glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
            code = po_path.parent.parent.name
            self._translations[code] = _compile(po_path)
        offered_set = set(offered) if offered is not None else set(self._translations)
        self.locales: tuple[str, ...] = tuple(
            code for code in self._translations if code in offered_set or code == DEFAULT_LOCALE
        )
        self._rtl = frozenset(rtl)
        self._globals = dict(globals_ or {})
        #: (locale, context, msgid) -> the rendered text, for texts without parameters: the
        #: same words every time (a question, a button's label, a command word), looked up
        #: and formatted once. Message ids come from the code, never from what people type
        #: (their words are verbatim texts, which are not kept here).
        self._plain: dict[tuple[str, str | None, str], str] = {}
        #: One translator per locale we have, so that what is worked out per translator (the
        #: engine's command words) is worked out once.
        self._translators: dict[str, Callable[[Text], str]] = {
            code: self._make_translator(code) for code in self._translations
        }
        # Babel reads a language's number formats from its CLDR data the first time a number
        # is written in it: 15-40 ms (English, with the data it inherits, and 5 MB) on a slow
        # machine, with everything else the process was doing waiting, in the middle of a
        # turn. Read here, once per process, before anyone is served.
        for code in self.locales:
            format_number(0, code)

    def is_rtl(self, locale: str) -> bool:
        return locale in self._rtl

    def supports(self, locale: str | None) -> bool:
        return locale in self.locales

    def negotiate(self, *hints: str | None) -> str:
        """The first hint we support: an explicit choice, a channel's hint (Telegram
        language_code, a widget attribute) or an Accept-Language header; else English."""
        for hint in hints:
            if not hint:
                continue
            for candidate in _parse_accept_language(hint):
                code = _base_code(candidate)
                if code in self.locales:
                    return code
        return DEFAULT_LOCALE

    def render(self, text: Text, locale: str) -> str:
        if text.parts:
            return "\n".join(self.render(part, locale) for part in text.parts)
        if text.verbatim:
            return text.msgid
        if text.params or text.plural is not None:
            return self._render(text, locale)[0]
        key = (locale, text.context, text.msgid)
        rendered = self._plain.get(key)
        if rendered is None:
            rendered, keep = self._render(text, locale)
            if keep and len(self._plain) < _PLAIN_CACHE_SIZE:
                self._plain[key] = rendered
        return rendered

    def _render(self, text: Text, locale: str) -> tuple[str, bool]:
        """The text and whether it may be kept (not when its translation is broken: that is
        logged every time it is said)."""
        tr = self._translations.get(locale) or self._translations[DEFAULT_LOCALE]
        if text.plural is not None:
            template = tr.ngettext(text.msgid, text.plural, text.n if text.n is not None else 1)
        elif text.context is not None:
            template = str(tr.pgettext(text.context, text.msgid))
        else:
            template = tr.gettext(text.msgid)
        if "{" not in template:
            return template, True
        values: dict[str, str] = dict(self._globals)
        for name, value in text.params:
            if isinstance(value, Text):
                values[name] = self.render(value, locale)
            elif isinstance(value, int):
                values[name] = format_number(value, locale)
            else:
                values[name] = value
        try:
            return template.format_map(values), True
        except (KeyError, IndexError, ValueError):
            # A broken translation must never break a turn: fall back to the English source.
            log.error("translation of %r in %s has bad placeholders", text.msgid[:40], locale)
            return text.msgid.format_map(values), False

    def translator(self, locale: str) -> Callable[[Text], str]:
        """`render` in `locale`, as one argument function (the engine's `Translate`)."""
        return self._translators.get(locale) or self._make_translator(locale)

    def _make_translator(self, locale: str) -> Callable[[Text], str]:
        return lambda text: self.render(text, locale)


@lru_cache(maxsize=4096)
def format_number(value: int, locale: str) -> str:
    """A whole number as `locale` writes it. Cached: Babel parses the locale and its number
    pattern on every call, and the numbers a dialogue shows (counts, lengths) are few."""
    return str(format_decimal(value, locale=locale))


def _compile(po_path: Path) -> NullTranslations:
    with po_path.open("rb") as fh:
        # A broken entry must stop the start, not be skipped with a warning on stdout.
        catalog = read_po(fh, locale=po_path.parent.parent.name, domain=DOMAIN, abort_invalid=True)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


def _parse_accept_language(header: str) -> list[str]:
    """Accept-Language in preference order (q-values honoured); a bare code works too."""
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        piece = part.strip()
        if not piece:
            continue
        lang, _, params = piece.partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if quality > 0:
            weighted.append((-quality, index, lang.strip()))
    return [lang for _, _, lang in sorted(weighted)]


def _base_code(tag: str) -> str:
    tag = tag.replace("_", "-").strip()
    try:
        return str(Locale.parse(tag, sep="-").language)
    except (ValueError, UnknownLocaleError):
        return tag.split("-", 1)[0].lower()
