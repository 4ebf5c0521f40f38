"""A small fake of the GOV.UK Notify API on loopback, for the official client's real code.

It checks the client's JWT (HS256, `iss` = the service id, signed with the key's secret), and
records each email and SMS request; it can answer 500 for the next N requests.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web

SERVICE_ID = str(uuid.UUID(int=1))
SECRET = str(uuid.UUID(int=2))
API_KEY = f"intake_test-{SERVICE_ID}-{SECRET}"
EMAIL_TEMPLATE = str(uuid.UUID(int=3))
SMS_TEMPLATE = str(uuid.UUID(int=4))


@dataclass
class FakeNotify:
    emails: list[dict[str, Any]] = field(default_factory=list)
    sms: list[dict[str, Any]] = field(default_factory=list)
    fail_next: int = 0
    unauthorised: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2/notifications/email", self._email)
        app.router.add_post("/v2/notifications/sms", self._sms)
        return app

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return False
        try:
            claims = jwt.decode(header[7:], SECRET, algorithms=["HS256"])
        except jwt.PyJWTError:
            return False
        return bool(claims.get("iss") == SERVICE_ID)

    async def _record(self, request: web.Request, into: list[dict[str, Any]]) -> web.Response:
        if not self._authorised(request):
            self.unauthorised += 1
            return web.json_response(
                {
                    "errors": [{"error": "AuthError", "message": "Invalid token"}],
                    "status_code": 403,
                },
                status=403,
            )
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.json_response(
                {"errors": [{"error": "Exception", "message": "Internal"}], "status_code": 500},
                status=500,
            )
        body = await request.json()
        into.append(body)
        return web.json_response(
            {"id": str(uuid.uuid4()), "reference": body.get("reference"), "content": {}},
            status=201,
        )

    async def _email(self, request: web.Request) -> web.Response:
        return await self._record(request, self.emails)

    async def _sms(self, request: web.Request) -> web.Response:
        return await self._record(request, self.sms)
