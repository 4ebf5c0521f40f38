"""Checks of the gettext catalogs in locales/ (run with `make messages-check`).

Every catalog must be up to date with the code, complete, keep the placeholders of its
message ids, have the plural forms Babel knows for its language, and let the whole
dialogue render in that language. A catalog that fails here would show a person a
half-English, broken or wrong message at the worst moment, so none of these is optional.
"""

from __future__ import annotations

import gettext
import logging
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from babel import Locale
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from bot.engine.commands import CHANGE_WORD
from bot.engine.engine import Engine, command_word
from bot.engine.needs import FixedNeeds
from bot.engine.types import COMMANDS, ConversationState, Inbound, Outbound, P, T, Text, Turn
from bot.i18n import Catalogs
from dialogs.intake import EMAIL_ALERTS, INTAKE
from dialogs.languages import LANGUAGES, RTL_LOCALES

ROOT = Path(__file__).resolve().parents[2]
LOCALES = ROOT / "locales"
POT = LOCALES / "messages.pot"
SOURCE_LOCALE = "en"
#: The gettext keywords of the code (the Makefile's `-k T -k P:1,2 -k C:1c,2 --no-default-keywords`).
KEYWORDS: dict[str, Any] = {"T": None, "P": (1, 2), "C": ((1, "c"), 2)}
PRIVACY_URL = "https://example.org/privacy"
PHONE = "03000 616161"
REFERENCE = "ABCD-EFGH"

PO_FILES: dict[str, Path] = {
    path.parent.parent.name: path for path in sorted(LOCALES.glob("*/LC_MESSAGES/messages.po"))
}
ALL_CODES = sorted(PO_FILES)
TRANSLATED_CODES = [code for code in ALL_CODES if code != SOURCE_LOCALE]
RENDER_CODES = sorted(set(PO_FILES) | {SOURCE_LOCALE})

_PLACEHOLDER = re.compile(r"\{[^{}\s]*\}")
_PLURAL_FORMS_HEADER = re.compile(r'^"Plural-Forms:\s*nplurals=(\d+);\s*plural=(.*?);?\\n"$', re.M)

MessageKey = tuple[str | tuple[str, ...], str | None]


# ---------------------------------------------------------------------- helpers


def _read(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as fh:
        # Strict: a malformed entry (say, a msgid without its msgstr after a merge) fails here
        # instead of being skipped with a warning.
        return read_po(fh, locale=locale, domain="messages", abort_invalid=True)


def _key(message: Any) -> MessageKey:
    return (message.id, message.context)


def _ids(catalog: Catalog) -> set[MessageKey]:
    return {_key(m) for m in catalog if m.id}


def _fields(template: str) -> set[str]:
    """The `{name}` fields of a str.format template (ValueError for broken braces)."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def _short(msgid: Any) -> str:
    text = msgid[0] if isinstance(msgid, tuple) else msgid
    return repr(text[:60])


@pytest.fixture(scope="module")
def pot() -> Catalog:
    return _read(POT)


@pytest.fixture(scope="module", params=ALL_CODES)
def po(request: pytest.FixtureRequest) -> tuple[str, Catalog, str]:
    code = request.param
    path = PO_FILES[code]
    return code, _read(path, locale=code), path.read_text(encoding="utf-8")


# ---------------------------------------------------------------------- which catalogs exist


def test_every_offered_language_has_a_catalog() -> None:
    offered = [code for code, _name in LANGUAGES]
    missing = [code for code in offered if code not in PO_FILES]
    assert not missing, (
        f"no locales/<code>/LC_MESSAGES/messages.po for offered languages: {missing}"
    )
    unknown = sorted(set(PO_FILES) - set(offered))
    assert not unknown, (
        f"catalogs for languages that are not offered in dialogs.languages: {unknown}"
    )


# ---------------------------------------------------------------------- up to date with the code


def test_messages_pot_is_up_to_date_with_the_code(pot: Catalog) -> None:
    """Extract with Babel, in process, exactly as `make messages-extract` does: a message
    added or changed in the code without `make messages-update` fails here."""
    with (ROOT / "babel.cfg").open(encoding="utf-8") as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    extracted: set[MessageKey] = set()
    for _filename, _lineno, message, _comments, context in extract_from_dir(
        ROOT, method_map, options_map, keywords=KEYWORDS
    ):
        extracted.add((message, context))
    in_pot = _ids(pot)
    assert extracted, "Babel extracted nothing: check babel.cfg and the keywords"
    not_in_pot = sorted(map(str, extracted - in_pot))
    stale_in_pot = sorted(map(str, in_pot - extracted))
    assert not not_in_pot and not stale_in_pot, (
        "locales/messages.pot is out of date with the code; run `make messages-update`.\n"
        f"in the code, not in the .pot: {not_in_pot}\nin the .pot, not in the code: {stale_in_pot}"
    )


def test_catalog_has_the_same_messages_as_the_template(
    po: tuple[str, Catalog, str], pot: Catalog
) -> None:
    code, catalog, _raw = po
    missing = sorted(map(str, _ids(pot) - _ids(catalog)))
    extra = sorted(map(str, _ids(catalog) - _ids(pot)))
    assert not missing and not extra, (
        f"{code}: catalog out of date with messages.pot; run `make messages-update`.\n"
        f"missing: {missing}\nnot in the template: {extra}"
    )


def test_catalog_has_no_fuzzy_or_obsolete_entries(po: tuple[str, Catalog, str]) -> None:
    code, catalog, raw = po
    assert not catalog.fuzzy, f"{code}: the header entry is marked fuzzy"
    fuzzy = [_short(m.id) for m in catalog if m.id and m.fuzzy]
    assert not fuzzy, f"{code}: fuzzy entries (not used at run time): {fuzzy}"
    assert not catalog.obsolete, (
        f"{code}: obsolete entries: {[_short(k) for k in catalog.obsolete]}"
    )
    assert not re.search(r"^#~", raw, re.M), f"{code}: obsolete (#~) lines left in the file"


def test_catalog_language_matches_its_directory(po: tuple[str, Catalog, str]) -> None:
    code, catalog, raw = po
    assert re.search(rf'^"Language: {re.escape(code)}\\n"$', raw, re.M), f"{code}: Language header"
    assert str(catalog.locale) == code


# ---------------------------------------------------------------------- complete


@pytest.mark.parametrize("code", TRANSLATED_CODES)
def test_catalog_is_complete(code: str, pot: Catalog) -> None:
    catalog = _read(PO_FILES[code], locale=code)
    untranslated = []
    for message in catalog:
        if not message.id:
            continue
        forms = message.string if isinstance(message.string, tuple) else (message.string,)
        if not all(form and form.strip() for form in forms):
            untranslated.append(_short(message.id))
    assert not untranslated, f"{code}: {len(untranslated)} untranslated messages: {untranslated}"


# ---------------------------------------------------------------------- placeholders


def test_translations_keep_the_placeholders(po: tuple[str, Catalog, str]) -> None:
    code, catalog, _raw = po
    problems: list[str] = []
    for message in catalog:
        if not message.id:
            continue
        if isinstance(message.id, tuple):
            allowed = _fields(message.id[0]) | _fields(message.id[1])
            required = allowed - {"n"}
            forms = message.string if isinstance(message.string, tuple) else (message.string,)
        else:
            allowed = required = _fields(message.id)
            forms = (message.string,)
        for index, form in enumerate(forms):
            if not form:
                continue  # completeness is checked separately (English is the template)
            try:
                found = _fields(form)
                form.format_map(dict.fromkeys(found, "x"))
            except (ValueError, KeyError, IndexError, AttributeError) as exc:
                problems.append(
                    f"{_short(message.id)} form {index}: broken braces ({exc}): {form!r}"
                )
                continue
            if isinstance(message.id, tuple):
                ok = required <= found <= allowed
            else:
                ok = found == allowed
            if not ok:
                problems.append(
                    f"{_short(message.id)} form {index}: has {sorted(found)}, needs {sorted(required)}"
                    f" (allowed {sorted(allowed)}): {form!r}"
                )
    assert not problems, f"{code}: placeholders differ from the message id:\n" + "\n".join(problems)


# ---------------------------------------------------------------------- plural forms


#: Every count the product can put in a plural message (answers are at most 20,000 characters),
#: and a few larger ones.
_COUNTS = (*range(0, 20_001), 100_000, 1_000_000, 1_000_001)


def test_plural_forms_match_babel(po: tuple[str, Catalog, str]) -> None:
    """The catalog's Plural-Forms must pick, for every count the product can show, the form that
    the language's CLDR plural rules (Babel's data) call for. Behaviour is compared, not the
    text of the rule: CLDR releases rewrite rules in equivalent ways (and add categories such as
    Portuguese "many" for exact millions), and that must not fail a correct catalog."""
    code, catalog, raw = po
    header = _PLURAL_FORMS_HEADER.search(raw)
    assert header, f"{code}: no Plural-Forms header"
    nplurals, expr = int(header.group(1)), header.group(2).strip()
    form_of = gettext.c2py(expr)
    category_of = Locale.parse(code).plural_form
    index_for: dict[str, int] = {}
    category_for: dict[int, str] = {}
    for n in _COUNTS:
        index, category = form_of(n), category_of(n)
        assert 0 <= index < nplurals, f"{code}: count {n} selects form {index} of {nplurals}"
        if n >= 1_000_000 and index_for.get(category) is None:
            continue  # a category only such counts reach (pt "many"): never shown by the product
        assert index_for.setdefault(category, index) == index, (
            f"{code}: CLDR calls {n} {category!r}, but the catalog picks form {index} where it "
            f"picked form {index_for[category]} for other {category!r} counts"
        )
        assert category_for.setdefault(index, category) == category, (
            f"{code}: the catalog's form {index} serves both {category_for[index]!r} and "
            f"{category!r} (count {n})"
        )
    for message in catalog:
        if not message.id or not isinstance(message.id, tuple):
            continue
        forms = message.string if isinstance(message.string, tuple) else (message.string,)
        assert len(forms) == nplurals, (
            f"{code}: {_short(message.id)} has {len(forms)} forms, needs {nplurals}"
        )
        if code != SOURCE_LOCALE:
            empty = [i for i, form in enumerate(forms) if not form.strip()]
            assert not empty, f"{code}: {_short(message.id)} has empty plural forms {empty}"


# ---------------------------------------------------------------------- the dialogue renders


@pytest.fixture(scope="module")
def catalogs() -> Catalogs:
    return Catalogs(rtl=RTL_LOCALES, globals_={"privacy_url": PRIVACY_URL, "contact_phone": PHONE})


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(INTAKE, switches={EMAIL_ALERTS: True})


def _with_command_words(text: Text) -> Text:
    words = {command: command_word(command) for command in COMMANDS}
    return Text(text.msgid, tuple(sorted({**dict(text.params), **words}.items())))


def _key_texts() -> list[Text]:
    """Texts that must never be shown in English to someone who chose another language:
    the welcome, the 999 advice, the complaint explanation and the whistleblowing advice."""
    steps = INTAKE.by_id
    texts: list[Text] = []
    for step_id in ("welcome", "complaint_info", "whistleblowing", "share_with_service"):
        prompt = steps[step_id].prompt
        assert not callable(prompt)
        texts.extend(prompt)
    texts.extend(c.note for c in steps["risk"].choices if c.note is not None)
    texts.extend(c.note for c in steps["mha"].choices if c.note is not None)
    texts.extend(INTAKE.messages[key] for key in ("privacy", "cancelled"))
    texts.extend(_with_command_words(INTAKE.messages[key]) for key in ("help", "unknown_command"))
    return texts


KEY_TEXTS = _key_texts()
KEY_MSGIDS = {t.msgid for t in KEY_TEXTS}


@dataclass
class Conversation:
    """Drives the engine in one language and renders everything it says."""

    engine: Engine
    catalogs: Catalogs
    locale: str
    state: ConversationState = field(init=False)
    rendered: list[str] = field(default_factory=list)
    #: What the last turn said, rendered (its messages, choice labels and echo).
    last: list[str] = field(default_factory=list)
    seen_msgids: set[str] = field(default_factory=set)
    turns: list[Turn] = field(default_factory=list)

    def __post_init__(self) -> None:
        turn = self.engine.start(self.locale)
        self.state = turn.state
        self.state.locale = self.locale
        self._check(turn)

    def send(
        self,
        kind: str,
        value: str = "",
        *,
        matches: list[Any] | None = None,
        acknowledgement: str | None = None,
    ) -> Turn:
        needs = FixedNeeds(
            matches=matches or [], reference=REFERENCE, acknowledge_by=acknowledgement
        )
        turn = self.engine.handle(
            self.state,
            Inbound(kind, value),  # type: ignore[arg-type]
            self.catalogs.translator(self.locale),
            needs,
        )
        self.state = turn.state
        self._check(turn)
        return turn

    def choose(self, choice_id: str, expect: str | None = None) -> Turn:
        turn = self.send("choice", choice_id)
        if expect is not None:
            assert turn.step == expect, f"{self.locale}: after {choice_id!r} at step {turn.step!r}"
        return turn

    def say(self, text: str, expect: str | None = None, **kwargs: Any) -> Turn:
        turn = self.send("text", text, **kwargs)
        if expect is not None:
            assert turn.step == expect, f"{self.locale}: after typing at step {turn.step!r}"
        return turn

    def command(self, name: str) -> Turn:
        return self.send("command", name)

    # -------------------------------------------------------------- checks

    def _check(self, turn: Turn) -> None:
        self.turns.append(turn)
        self.last = []
        assert turn.outbound, f"{self.locale}: a turn at {turn.step!r} said nothing"
        for out in turn.outbound:
            self._check_outbound(out)
        if turn.echo is not None:
            self._check_text(turn.echo, allow_empty=False)

    def _check_outbound(self, out: Outbound) -> None:
        self._check_text(out.text, allow_empty=False)
        for row in out.summary:
            self._check_text(row.label, allow_empty=False)
            self._check_text(row.value, allow_empty=False)
        labels = []
        for choice in out.choices:
            labels.append(self._check_text(choice.label, allow_empty=False))
        assert len(set(labels)) == len(labels), (
            f"{self.locale}: two choices look the same: {labels}"
        )
        for link in out.links:
            self._check_text(link.label, allow_empty=False)

    def _check_text(self, text: Text, *, allow_empty: bool) -> str:
        rendered = self.catalogs.render(text, self.locale)
        where = f"{self.locale}: {text.msgid[:60]!r}"
        assert allow_empty or rendered.strip(), f"{where} rendered empty"
        leftover = _PLACEHOLDER.findall(rendered)
        assert not leftover, f"{where} left placeholders {leftover}: {rendered!r}"
        for part in _flatten(text):
            if part.verbatim:
                continue
            self.seen_msgids.add(part.msgid)
            if self.locale != SOURCE_LOCALE and part.msgid in KEY_MSGIDS:
                shown = self.catalogs.render(part, self.locale)
                assert shown != self.catalogs.render(part, SOURCE_LOCALE), (
                    f"{where} is not translated"
                )
        self.rendered.append(rendered)
        self.last.append(rendered)
        return rendered


def _flatten(text: Text) -> Iterator[Text]:
    if text.parts:
        for part in text.parts:
            yield from _flatten(part)
        return
    yield text
    for _name, value in text.params:
        if isinstance(value, Text):
            yield from _flatten(value)


def _to_service_type(c: Conversation, experience: str) -> None:
    c.choose("start", "experience")
    c.choose(experience, "service_type")


def _good_path(c: Conversation) -> None:
    _to_service_type(c, "good")
    c.choose("care_home", "provider")
    c.say("Oak House, Leeds", "relationship")  # no directory match: kept as typed
    c.choose("self", "what_happened")
    c.say("The staff were kind and patient.", "share_with_service")
    c.choose("yes", "contact")
    c.choose("no", "referral")
    c.choose("yes", "referral_name")
    c.say("Age UK", "summary")
    # "change 5" in this language's word: the account, quoted as it is now, then back.
    word = c.catalogs.render(CHANGE_WORD, c.locale)
    c.say(f"{word} 5", "what_happened")
    assert any("The staff were kind and patient." in r for r in c.last), c.last
    c.say("The staff were kind, patient and quick.", "summary")
    c.send("choice", "submit", acknowledgement="email")  # as the service says
    assert c.state.step == "submitted"
    assert any(REFERENCE in r for r in c.last), c.last
    c.say("one more thing")  # after the submit: already submitted, with the reference
    assert c.state.status == "submitted"
    assert any(REFERENCE in r for r in c.last), c.last


def _poor_path_whistleblowing(c: Conversation) -> None:
    _to_service_type(c, "poor")
    c.choose("other", "service_other")
    c.say("a private clinic", "provider")
    c.say("Qwxz, Leeds", "provider", matches=[["1-000000001", "Oak House", "Oak House, Leeds LS1"]])
    c.choose("1-000000001", "relationship")  # matched: inspection alerts are offered later
    c.choose("work", "works_there")
    c.choose("yes", "whistleblowing")
    c.choose("continue", "when")
    c.choose("skip", "service_part")
    c.say("Ward 3", "what_happened")
    c.say("Residents were left without water.", "share_with_service")
    c.choose("no", "risk")
    c.choose("yes", "authorities")  # the 999 note
    c.choose("both", "complaint")
    c.choose("not_yet", "complaint_info")
    c.choose("continue", "contact")  # not a mental health service: no MHA question
    c.choose("yes", "contact_name")
    c.say("12345", "contact_name")  # not a name
    c.say("Sam Taylor", "contact_email")
    c.say("not an email", "contact_email")
    c.say("sam@example.com", "contact_phone")
    c.choose("skip", "alerts")
    c.choose("yes", "referral")
    c.choose("no", "summary")
    c.choose("edit", "edit_answer")
    c.choose("when", "when")
    c.say("Last week", "summary")
    c.send("choice", "submit", acknowledgement="sms")  # as the service says
    assert c.state.step == "submitted"


def _mental_health_path(c: Conversation) -> None:
    _to_service_type(c, "mixed")
    c.choose("mental_health", "provider")
    c.say("Riverside community team", "relationship")
    c.choose("friend_family", "when")
    c.say("Still happening", "service_part")
    c.choose("skip", "what_happened")
    c.say("My brother was not given his medicine.", "share_with_service")
    c.choose("yes", "risk")
    c.choose("not_sure", "authorities")  # the urgent-review note
    c.choose("neither", "complaint")
    c.choose("formal", "complaint_info")
    c.choose("continue", "mha")
    c.choose("yes", "contact")  # the Mental Health Act note
    c.choose("yes", "contact_name")
    c.say("Ana", "contact_email")
    c.choose("skip", "contact_phone")  # no email: a phone number is needed
    c.say("12", "contact_phone")  # not a UK number
    c.say("020 7946 0958", "referral")
    c.choose("yes", "referral_name")
    c.choose("skip", "summary")
    c.choose("restart", "welcome")


def _childrens_social_care(c: Conversation) -> None:
    _to_service_type(c, "poor")
    c.choose("childrens_social_care", "not_covered")
    c.choose("change_service", "service_type")
    c.choose("childrens_social_care", "not_covered")
    c.choose("end")
    assert c.state.status == "ended"
    c.say("hello?")  # after the end


def _outside_england(c: Conversation) -> None:
    _to_service_type(c, "poor")
    c.choose("outside_england", "outside_england")
    c.choose("back", "service_type")  # chosen by mistake
    c.choose("hospital", "provider")
    c.say("Royal Infirmary, Edinburgh EH16 4SA", "outside_england")
    c.choose("end")
    assert c.state.status == "ended"


def _commands_and_mistakes(c: Conversation) -> None:
    c.command("back")  # nothing to go back to
    c.command("help")
    c.command("privacy")
    assert any(PRIVACY_URL in r for r in c.last), c.last
    c.choose("privacy", "welcome")  # the welcome's privacy button
    c.choose("language", "language")
    c.choose(c.locale, "welcome")  # "OK. I will speak <this language>."
    c.choose("start", "experience")
    c.say("qwxz", "experience")  # matches no choice
    c.choose("submit", "experience")  # a stale button
    c.choose("poor", "service_type")
    c.command("help")  # the step's own help
    c.choose("other", "service_other")
    c.say("   ", "service_other")  # empty
    c.say("x" * 1501, "service_other")  # too long: the plural message
    c.command("back")
    c.command("language")
    c.choose(c.locale, "service_type")
    c.choose("hospital", "provider")
    c.command("help")  # the lookup step's help
    c.say("/stop", "provider")  # an unknown command: the commands in this language's words
    c.command("restart")
    c.command("cancel")
    assert c.state.status == "cancelled"
    c.say("still there?")  # after cancelling


def _quick_exit(c: Conversation) -> None:
    c.choose("start", "experience")
    c.say(c.catalogs.translator(c.locale)(command_word("exit")))  # their own word for exit
    assert c.state.status == "cancelled" and not c.state.answers


def _deep_link(c: Conversation) -> None:
    oak_house = ("1-000000001", "Oak House", "Oak House, Leeds LS1")
    turn = c.engine.start(c.locale, oak_house[0], FixedNeeds(locations={oak_house[0]: oak_house}))
    c.state = turn.state
    c._check(turn)
    _to_service_type(c, "good")
    c.choose("hospice", "provider")  # "is this the service?"
    c.choose("1-000000001", "relationship")


def _chat_survey(c: Conversation) -> None:
    """The survey about the chat: its own dialogue on the same engine, answered twice (once
    to the end, once stopped)."""
    from dialogs.survey import SURVEY

    c.engine = Engine(SURVEY)
    for stop in (False, True):
        turn = c.engine.start(c.locale)
        c.state = turn.state
        c._check(turn)
        c.choose("neither", "survey_said_all")
        if stop:
            c.command("cancel")
            assert c.state.status == "cancelled"
            return
        c.choose("partly", "survey_improve")
        c.say("Shorter questions.", "survey_thanks")
        c.say("hello?")  # after the end


def _saved_before_new_questions(c: Conversation) -> None:
    """A conversation saved at the summary before the sharing and referral questions
    existed: sending it asks them first (with a word on why), then comes back."""
    c.state = ConversationState(
        step="summary",
        locale=c.locale,
        answers={
            "welcome": "start",
            "experience": "good",
            "service_type": "dentist",
            "provider": {"text": "Smile Dental, York", "location_id": None, "name": None},
            "relationship": "self",
            "what_happened": "Quick and gentle.",
            "contact": "no",
        },
        history=["welcome", "experience", "service_type", "provider", "relationship"],
    )
    c.choose("submit", "share_with_service")
    c.choose("no", "referral")
    c.choose("no", "summary")
    c.send("choice", "submit")
    assert c.state.step == "submitted"


SCRIPTS = {
    "chat_survey": _chat_survey,
    "good_path": _good_path,
    "saved_before_new_questions": _saved_before_new_questions,
    "poor_path_whistleblowing": _poor_path_whistleblowing,
    "mental_health": _mental_health_path,
    "childrens_social_care": _childrens_social_care,
    "outside_england": _outside_england,
    "commands_and_mistakes": _commands_and_mistakes,
    "deep_link": _deep_link,
    "quick_exit": _quick_exit,
}


@pytest.mark.parametrize("script", list(SCRIPTS))
@pytest.mark.parametrize("code", RENDER_CODES)
def test_dialogue_renders_in_every_language(
    code: str, script: str, engine: Engine, catalogs: Catalogs, caplog: pytest.LogCaptureFixture
) -> None:
    assert catalogs.supports(code)
    conversation = Conversation(engine, catalogs, code)
    with caplog.at_level(logging.ERROR, logger="bot.i18n"):
        SCRIPTS[script](conversation)
    # A broken translation falls back to English and logs: that must never happen.
    assert not [r.getMessage() for r in caplog.records if r.name == "bot.i18n"]


@pytest.mark.parametrize("code", RENDER_CODES)
def test_scripts_reach_every_message(
    code: str, engine: Engine, catalogs: Catalogs, pot: Catalog
) -> None:
    """The scripted conversations together show every message of the template, so the
    rendering checks above cover the whole catalog (a guard on the scripts themselves)."""
    seen: set[str] = set()
    for script in SCRIPTS.values():
        conversation = Conversation(engine, catalogs, code)
        script(conversation)
        seen |= conversation.seen_msgids
    dialogue = {
        m.id[0] if isinstance(m.id, tuple) else m.id
        for m in pot
        if m.id and any(filename.startswith("dialogs/") for filename, _line in m.locations)
    }
    unseen = sorted(dialogue - seen)
    assert not unseen, f"{code}: dialogue messages no script renders: {unseen}"


@pytest.mark.parametrize("code", RENDER_CODES)
def test_every_message_renders(
    code: str, catalogs: Catalogs, pot: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    """Every message of the template (also those said outside the dialogue, by a channel)
    renders with its parameters filled in, without falling back to English."""
    with caplog.at_level(logging.ERROR, logger="bot.i18n"):
        for message in pot:
            if not message.id:
                continue
            if isinstance(message.id, tuple):
                names = (_fields(message.id[0]) | _fields(message.id[1])) - {"n"}
                counts = range(0, 112)
            else:
                names = _fields(message.id)
                counts = range(1)
            params = {name: f"<{name}>" for name in names}
            for n in counts:
                if isinstance(message.id, tuple):
                    text = P(message.id[0], message.id[1], n, **params)
                else:
                    text = T(message.id, **params)
                rendered = catalogs.render(text, code)
                assert rendered.strip(), f"{code}: {_short(message.id)} rendered empty"
                for name in names:
                    assert f"<{name}>" in rendered, (
                        f"{code}: {_short(message.id)} lost {{{name}}}: {rendered!r}"
                    )
                leftover = _PLACEHOLDER.findall(rendered.replace(PRIVACY_URL, ""))
                assert not leftover, f"{code}: {_short(message.id)} left {leftover}: {rendered!r}"
    assert not [r.getMessage() for r in caplog.records if r.name == "bot.i18n"]


@pytest.mark.parametrize("code", TRANSLATED_CODES)
def test_key_explanations_are_translated(code: str, catalogs: Catalogs) -> None:
    untranslated = [
        t.msgid[:60]
        for t in KEY_TEXTS
        if catalogs.render(t, code) == catalogs.render(t, SOURCE_LOCALE)
    ]
    assert not untranslated, f"{code}: shown in English: {untranslated}"
    for text in KEY_TEXTS:
        if "999" in text.msgid:
            assert "999" in catalogs.render(text, code), f"{code}: the 999 number is missing"


@pytest.mark.parametrize("code", RENDER_CODES)
def test_plural_message_renders_for_every_count(code: str, catalogs: Catalogs) -> None:
    too_long = INTAKE.messages["too_long"]
    assert too_long.plural is not None
    for n in [*range(0, 112), 1000, 1500, 20000, 100000]:
        text = P(too_long.msgid, too_long.plural, n, length=f"{n + 1:,}", limit=f"{n:,}")
        rendered = catalogs.render(text, code)
        assert f"{n:,}" in rendered and f"{n + 1:,}" in rendered, f"{code}: n={n}: {rendered!r}"
        assert not _PLACEHOLDER.findall(rendered), f"{code}: n={n}: {rendered!r}"


def test_language_changed_message_names_the_language(catalogs: Catalogs) -> None:
    english = catalogs.render(INTAKE.messages["language_changed"], SOURCE_LOCALE)
    same = [
        code
        for code in TRANSLATED_CODES
        if catalogs.render(INTAKE.messages["language_changed"], code) == english
    ]
    assert not same, f"still says it will speak English: {same}"


# ---------------------------------------------------------------------- right to left


def test_right_to_left_languages() -> None:
    assert RTL_LOCALES == {"ar", "ur"}
    catalogs = Catalogs(rtl=RTL_LOCALES)
    assert catalogs.is_rtl("ar") and catalogs.is_rtl("ur")
    assert not catalogs.is_rtl("en") and not catalogs.is_rtl("es")
