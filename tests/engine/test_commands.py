"""The one command rule, and typed command words at every kind of step, in every language."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.engine.commands import COMMAND_WORDS, START, UNKNOWN, TypedCommand, parse_command
from bot.engine.engine import Engine, command_word
from bot.engine.needs import FixedNeeds
from bot.engine.text import clean_text
from bot.engine.types import COMMANDS, ConversationClosed, ConversationState, Inbound, Text
from bot.i18n import Catalogs
from dialogs.intake import INTAKE
from dialogs.languages import LANGUAGES

CODES = [code for code, _name in LANGUAGES]


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(INTAKE)


@pytest.fixture(scope="module")
def catalogs() -> Catalogs:
    return Catalogs(
        globals_={"privacy_url": "https://example.org/privacy", "contact_phone": "03000 616161"}
    )


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("cancel", TypedCommand("cancel")),
        ("  CANCEL.  ", TypedCommand("cancel")),
        ("/Cancel", TypedCommand("cancel")),
        ("/cancel now", TypedCommand("cancel")),
        ("exit", TypedCommand("exit")),
        ("/exit", TypedCommand("exit")),
        (" Exit! ", TypedCommand("exit")),
        ("I want to exit", None),
        ("/help@IntakeBot", TypedCommand("help")),
        ("¡help!", TypedCommand("help")),
        ("/start abc_1", TypedCommand(START, "abc_1")),
        ("/stop", TypedCommand(UNKNOWN)),
        ("/settings", TypedCommand(UNKNOWN)),
        ("/", TypedCommand(UNKNOWN)),
        ("please cancel my appointment", None),
        ("help me", None),
        ("/path/to/a file", None),
        ("/ 12 Main Street", None),
        ("St Mary's, cancel", None),
        ("", None),
    ],
)
def test_parse_command(typed: str, expected: TypedCommand | None) -> None:
    assert parse_command(typed) == expected


def _at(engine: Engine, render: Callable[[Text], str], step: str, locale: str) -> ConversationState:
    """A conversation at `step` (set directly: the commands do not depend on the path)."""
    answers = {"welcome": "start", "experience": "poor", "service_type": "gp"}
    return ConversationState(step=step, locale=locale, answers=dict(answers), history=["welcome"])


#: One step of every kind: choice, text, lookup, info, summary.
STEPS = ["experience", "when", "provider", "complaint_info", "summary"]


def _needs() -> FixedNeeds:
    return FixedNeeds(reference="ABCD-EFGH")


@pytest.mark.parametrize("code", CODES)
def test_command_words_work_at_every_kind_of_step_in_every_language(
    code: str, engine: Engine, catalogs: Catalogs
) -> None:
    render = catalogs.translator(code)
    for step in STEPS:
        for command in COMMANDS:
            words = {command, f"/{command}", f"  {command.upper()}! "}
            own = render(command_word(command))
            words |= {own, f" {own.upper()}? "} | ({f"/{own}"} if " " not in own else set())
            for typed in words:
                state = _at(engine, render, step, code)
                turn = engine.handle(state, Inbound("text", typed), render, _needs())
                said = [render(o.text) for o in turn.outbound]
                if command not in ("cancel", "restart", "exit"):
                    assert turn.state.answers == state.answers, (code, step, typed)
                if command == "cancel":
                    assert turn.state.status == "cancelled", (code, step, typed)
                elif command == "exit":
                    # At once (no question), nothing kept, and nothing said of the topic.
                    assert turn.state.status == "cancelled", (code, step, typed)
                    assert not turn.state.answers and not turn.state.history
                    assert turn.events == (ConversationClosed("exit"),), (code, typed)
                    assert said == [render(INTAKE.messages["exited"])], (code, step, typed)
                elif command == "help":
                    assert turn.state.step == step and turn.state.status == "active"
                    advice = INTAKE.by_id[step].help
                    general = said[1] if advice else said[0]
                    assert turn.outbound[0].text == advice or not advice, (code, typed)
                    assert "999" in general, (code, typed)
                elif command == "language":
                    assert turn.state.step == "language", (code, step, typed)
                elif command == "restart":
                    assert turn.state.step == INTAKE.first_step and not turn.state.answers
                elif command == "back":
                    assert turn.state.step == "welcome", (code, step, typed)
                elif command == "privacy":
                    assert turn.state.step == step and "example.org/privacy" in said[0]


@pytest.mark.parametrize("code", CODES)
def test_help_names_the_words_that_are_accepted(code: str, catalogs: Catalogs) -> None:
    render = catalogs.translator(code)
    engine = Engine(INTAKE)
    state = _at(engine, render, "when", code)
    helped = engine.handle(state, Inbound("command", "help"), render).outbound
    helptext = "\n".join(render(o.text) for o in helped)
    unknown = render(engine.handle(state, Inbound("text", "/stop"), render).outbound[0].text)
    words = [render(command_word(c)) for c in COMMANDS]
    assert len({w.casefold() for w in words}) == len(COMMANDS), f"{code}: two commands share a word"
    for command, word in zip(COMMANDS, words, strict=True):
        assert word in unknown, (code, word)
        if command != "help":
            assert word in helptext, (code, word)
        # Each word the catalog names is accepted as that command.
        assert parse_command(word, engine_words(render)) == TypedCommand(command), (code, word)


def engine_words(render: Callable[[Text], str]) -> dict[str, str]:
    from bot.engine.commands import command_words

    return command_words((c, render(COMMAND_WORDS[c])) for c in COMMANDS)


@pytest.mark.parametrize("code", CODES)
def test_text_that_merely_contains_a_command_word_is_an_answer(
    code: str, engine: Engine, catalogs: Catalogs
) -> None:
    render = catalogs.translator(code)
    for command in COMMANDS:
        typed = f"last week, before {render(command_word(command))} was mentioned"
        state = _at(engine, render, "when", code)
        turn = engine.handle(state, Inbound("text", typed), render)
        assert turn.state.answers["when"] == typed and turn.state.step != "when"


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("typed", ["/stop", "/settings", "/"])
def test_an_unknown_slash_word_is_reprompted_at_every_kind_of_step(
    step: str, typed: str, engine: Engine, catalogs: Catalogs
) -> None:
    render = catalogs.translator("en")
    state = _at(engine, render, step, "en")
    # A command must never reach the directory search.
    needs = FixedNeeds()
    turn = engine.handle(state, Inbound("text", typed), render, needs)
    assert needs.searched == []
    assert turn.state.step == step and turn.state.answers == state.answers
    first = render(turn.outbound[0].text)
    assert first.startswith("I don't know that command. You can use: back, restart, help")


TEXTS = {
    "bengali_conjunct_zwj": "র\u200d্যাব",  # ra + ZWJ + virama: the ya-phala form
    "bengali_zwnj": "ক্\u200cষ",  # a conjunct deliberately broken by ZWNJ
    "emoji_family": "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",
    "urdu_zwnj": "می\u200cخواہم",
    "decomposed": "cafe\u0301",
}


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_text_is_stored_exactly_as_typed(name: str, engine: Engine, catalogs: Catalogs) -> None:
    typed = TEXTS[name]
    assert clean_text(typed).encode() == typed.encode()
    render = catalogs.translator("en")
    state = _at(engine, render, "when", "en")
    turn = engine.handle(state, Inbound("text", typed), render)
    assert turn.state.answers["when"].encode("utf-8") == typed.encode("utf-8")


def test_dangerous_characters_are_removed_and_nothing_else() -> None:
    dangerous = "".join(
        [chr(c) for c in range(0x00, 0x20) if chr(c) not in "\t\n\r"]
        + [chr(c) for c in range(0x7F, 0xA0)]
        + [chr(c) for c in range(0x202A, 0x202F)]
        + [chr(c) for c in range(0x2066, 0x206A)]
    )
    assert clean_text(f"a{dangerous}b\u200c\u200dc") == "ab\u200c\u200dc"


@pytest.mark.parametrize("code", CODES)
def test_no_command_word_hides_a_choice(code: str, catalogs: Catalogs) -> None:
    """A command word is read before choices, so it must not be the label of a choice that
    means something else (a label that means the command itself is fine)."""
    from bot.engine.commands import command_words
    from bot.engine.text import fold

    render = catalogs.translator(code)
    words = command_words((c, render(command_word(c))) for c in COMMANDS)
    for step in INTAKE.steps:
        for choice in step.choices:
            command = words.get(fold(render(choice.label)))
            assert command in (None, choice.id), (code, step.id, choice.id, command)
    for choice_id, label in INTAKE.common_choices.items():
        command = words.get(fold(render(label)))
        assert command in (None, choice_id), (code, choice_id, command)


#: Each word of the exit command, in every language (the words the help text names).
EXIT_WORDS = {
    "ar": "خروج",
    "bn": "প্রস্থান",
    "cy": "gadael",
    "en": "exit",
    "es": "salir",
    "gu": "નીકળો",
    "it": "esci",
    "pa": "ਨਿਕਲੋ",
    "pl": "wyjdź",
    "pt": "sair",
    "ro": "ieșire",
    "ur": "نکلیں",
}


def test_every_language_has_its_exit_word() -> None:
    assert sorted(EXIT_WORDS) == sorted(CODES)


@pytest.mark.parametrize("code", CODES)
def test_the_parser_recognises_exit_in_every_language(code: str, catalogs: Catalogs) -> None:
    render = catalogs.translator(code)
    word = EXIT_WORDS[code]
    assert render(command_word("exit")) == word
    words = engine_words(render)
    for typed in (word, f"/{word}", f"  {word.upper()}! ", "exit", "/exit"):
        assert parse_command(typed, words) == TypedCommand("exit"), (code, typed)
    assert parse_command(f"{word} {word} {word}", words) is None


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("step", ["what_happened", "when", "provider"])
def test_the_exit_word_the_help_names_is_never_stored_as_an_answer(
    code: str, step: str, engine: Engine, catalogs: Catalogs
) -> None:
    """The help text tells people to type the exit word: typed at a question that takes
    text, it leaves at once, and neither it nor any earlier answer is kept."""
    from bot.intake.exit_help import EXIT_HELP

    render = catalogs.translator(code)
    state = _at(engine, render, step, code)
    for channel, note in EXIT_HELP.items():
        needs = FixedNeeds(exit_note=note)
        helped = engine.handle(state, Inbound("command", "help"), render, needs)
        said = "\n".join(render(o.text) for o in helped.outbound)
        assert EXIT_WORDS[code] in said, (code, channel)
    needs = FixedNeeds()
    turn = engine.handle(state, Inbound("text", EXIT_WORDS[code]), render, needs)
    assert turn.state.status == "cancelled" and turn.state.answers == {}
    assert needs.searched == []


def test_one_engine_reads_each_language_with_its_own_words(catalogs: Catalogs) -> None:
    """The engine keeps each translator's command words: a word of one language is a command
    only in that language, whichever language came first, and also with translators made
    anew for every call."""
    engine = Engine(INTAKE)
    english = catalogs.translator("en")
    for code in CODES:
        word = catalogs.translator(code)(command_word("cancel"))
        if word.casefold() == "cancel":
            continue
        for translator in (catalogs.translator(code), lambda t, c=code: catalogs.render(t, c)):
            assert engine.interpret(Inbound("text", word), translator) == Inbound(
                "command", "cancel"
            ), code
            assert engine.interpret(Inbound("text", word), english) == Inbound("text", word)
