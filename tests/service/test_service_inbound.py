"""What is typed is stored exactly as typed (report and transcript), over SQLite and
PostgreSQL; only characters dangerous to store or show are removed, from every field."""

from __future__ import annotations

import pytest

from bot.engine.types import Inbound
from bot.intake.service import IntakeService

TEXTS = {
    "bengali ZWJ and ZWNJ": "র\u200d্যাব আর ক্\u200cষ — কেউ আসেনি",
    "emoji ZWJ family": "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 waited",
    "urdu ZWNJ": "می\u200cخواہم — عملہ نہیں آیا",
    "decomposed accent": "cafe\u0301 staff",
}


@pytest.mark.parametrize("name", sorted(TEXTS))
async def test_text_is_stored_byte_for_byte(any_service: IntakeService, name: str) -> None:
    typed = TEXTS[name]
    service = any_service
    start = await service.start(channel="web")
    path = [
        ("choice", "start"),
        ("choice", "good"),
        ("choice", "dentist"),
        ("text", "Qwxz Zzyq Nonexistent"),
        ("choice", "self"),
        ("text", typed),
        ("choice", "yes"),  # may share with the service
        ("choice", "no"),  # no contact
        ("choice", "yes"),  # an organisation pointed them here
        ("text", typed),  # which one
        ("choice", "submit"),
    ]
    for kind, value in path:
        reply = await service.handle(start.conversation_id, Inbound(kind, value))  # type: ignore[arg-type]
    assert reply.reference is not None
    async with service.storage.unit_of_work() as uow:
        report = await uow.reports.get(reply.reference)
        transcript = await uow.transcripts.list(start.conversation_id)
    assert report is not None
    assert report.data["what_happened"].encode("utf-8") == typed.encode("utf-8")
    assert report.data["referral_name"].encode("utf-8") == typed.encode("utf-8")
    typed_entries = [
        e.payload for e in transcript if e.role == "user" and e.payload["kind"] == "text"
    ]
    assert typed.encode("utf-8") in [p["value"].encode("utf-8") for p in typed_entries]
    assert typed.encode("utf-8") in [p["text"].encode("utf-8") for p in typed_entries]


async def test_nul_and_overrides_are_removed_from_every_field(any_service: IntakeService) -> None:
    service = any_service
    start = await service.start(channel="web")
    await service.handle(start.conversation_id, Inbound("choice", "st\x00art\u202e"))
    moved = await service.handle(start.conversation_id, Inbound("choice", "\x00poor"))
    assert moved.step == "service_type"
    helped = await service.handle(start.conversation_id, Inbound("command", "help\x00"))
    assert helped.step == "service_type"
    typed = await service.handle(start.conversation_id, Inbound("text", "\x00\u2066"))
    assert typed.step == "service_type"
    async with service.storage.unit_of_work() as uow:
        transcript = await uow.transcripts.list(start.conversation_id)
    for entry in transcript:
        assert "\x00" not in repr(entry.payload) and "\u202e" not in str(entry.payload)
