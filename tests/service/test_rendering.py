"""The stored shape of a reply, and the web API's body made from it."""

from __future__ import annotations

from bot.channels.web.wire import reply_body
from bot.intake.rendering import RenderedChoice, RenderedMessage, Reply


def _reply(rtl: bool) -> Reply:
    return Reply(
        conversation_id="c1",
        locale="ar" if rtl else "en",
        step="experience",
        messages=[RenderedMessage("Pick one.", (RenderedChoice("poor", "Poor"),), "choice")],
        done=False,
        reference=None,
        rtl=rtl,
    )


def test_a_record_reads_back_as_the_same_reply() -> None:
    for rtl in (False, True):
        reply = _reply(rtl)
        assert Reply.from_record(reply.to_record()) == reply


def test_a_record_kept_by_an_older_version_still_reads() -> None:
    # Before the wire format moved to the web channel, kept replies were the API body.
    old = reply_body(_reply(True))
    assert "rtl" not in old
    assert Reply.from_record(old) == _reply(True)
    assert Reply.from_record(reply_body(_reply(False))).rtl is False


def test_the_api_body_has_the_direction_and_no_internal_fields() -> None:
    body = reply_body(_reply(True))
    assert body["dir"] == "rtl" and "rtl" not in body and "replayed" not in body
    assert "token" not in body and "transcript" not in body
    created = _reply(False)
    created.token = "t"
    assert reply_body(created)["token"] == "t" and reply_body(created)["dir"] == "ltr"
