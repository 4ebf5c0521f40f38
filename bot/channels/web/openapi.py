"""The web chat API as an OpenAPI 3.1 document, served at `GET /api/v1/openapi.json`.

This is the public contract (the spec's "The web chat API"). It is written out by hand, next to
the handlers it describes, and kept true by `tests/channels/test_web_openapi.py`, which checks
real responses of a running server against these schemas, and by the fuzz tests, which check
every answer they provoke.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from aiohttp import web

OPENAPI_PATH = "/api/v1/openapi.json"

_STRING = {"type": "string"}
_ERROR_STATUSES = {
    "400": "The request is malformed (bad JSON, missing or wrong fields).",
    "401": "The bearer token is missing or does not match this conversation.",
    "409": "survey_not_offered: that conversation offers no survey to this client (not a "
    "report it sent, the survey was taken or declined, or it has closed).",
    "403": "The page's origin may not use the chat service.",
    "404": "There is no such conversation.",
    "405": "This method is not allowed on this path.",
    "408": "The request body came too slowly.",
    "413": "The request body is too large.",
    "415": "The body is not JSON (send Content-Type: application/json).",
    "429": "Too many requests: wait for the number of seconds in Retry-After.",
    "503": "The database is not answering: retry after Retry-After seconds (a repeated "
    "client_message_id is safe: it is applied at most once).",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "additionalProperties": False,
                "properties": {
                    "code": {"type": "string", "description": "Stable, machine-readable."},
                    "message": {"type": "string", "description": "For people; may change."},
                },
            }
        },
    },
    "Choice": {
        "type": "object",
        "required": ["id", "label"],
        "properties": {"id": _STRING, "label": _STRING},
    },
    "Link": {
        "type": "object",
        "required": ["label", "url"],
        "properties": {"label": _STRING, "url": {"type": "string", "pattern": "^https://"}},
    },
    "SummaryRow": {
        "type": "object",
        "description": "One answer on the person's path, in the person's language.",
        "required": ["step", "label", "value", "changeable"],
        "properties": {
            "step": {
                "type": "string",
                "description": "The stable id of the step it answers. While the reply's step is "
                "`summary`, sending it as a `choice` goes straight to that question.",
            },
            "label": {"type": "string", "description": "What the answer is about."},
            "value": {
                "type": "string",
                "description": "The answer as shown: a choice's label, the words typed, or a "
                "plain 'not given' for a skipped question.",
            },
            "changeable": {
                "type": "boolean",
                "description": "Whether the row may be changed (offer a Change control).",
            },
        },
    },
    "SurveyOffer": {
        "type": "object",
        "description": "Additive: after the report is sent, an optional survey about the chat. "
        'Start it with POST /api/v1/conversations {"survey_for": conversation_id} and this '
        'conversation\'s token; decline it with the turn {"choice": "survey_decline"}. '
        "Its answers are stored apart from the report, with nothing linking them to it.",
        "required": ["conversation_id", "text", "choices"],
        "properties": {
            "conversation_id": {"type": "string", "format": "uuid"},
            "text": {"type": "string", "description": "The offer, in the person's language."},
            "choices": {
                "type": "array",
                "minItems": 2,
                "maxItems": 2,
                "items": {
                    "type": "object",
                    "required": ["id", "label"],
                    "properties": {
                        "id": {"enum": ["survey_start", "survey_decline"]},
                        "label": _STRING,
                    },
                },
            },
        },
    },
    "Message": {
        "type": "object",
        "required": ["text", "choices", "input"],
        "properties": {
            "text": {"type": "string", "description": "Plain text, no markup."},
            "choices": {"type": "array", "items": {"$ref": "#/components/schemas/Choice"}},
            "input": {"enum": ["choice", "text", "none"]},
            "links": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/Link"},
                "description": "Additive: old clients ignore it.",
            },
            "summary": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/SummaryRow"},
                "minItems": 1,
                "description": "Additive: on the message that shows the summary, one row per "
                "answer (its `text` says the same as numbered lines, for older clients).",
            },
            "value": {
                "type": "string",
                "description": "Additive: on a question being changed, the answer it has now "
                "(the person's own words), to put in the text box.",
            },
        },
    },
    "Reply": {
        "type": "object",
        "required": ["conversation_id", "locale", "dir", "step", "messages", "done", "reference"],
        "properties": {
            "conversation_id": {"type": "string", "format": "uuid"},
            "locale": _STRING,
            "dir": {"enum": ["ltr", "rtl"]},
            "step": {"type": "string", "description": "A stable step id (see the spec)."},
            "messages": {"type": "array", "items": {"$ref": "#/components/schemas/Message"}},
            "done": {"type": "boolean"},
            "reference": {"type": ["string", "null"], "pattern": "^[A-Z2-9]{4}-[A-Z2-9]{4}$"},
            "summary": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/SummaryRow"},
                "minItems": 1,
                "description": "Additive: the summary step's reply carries its rows, one per "
                "answer on the person's path (the same rows as its summary message).",
            },
            "survey_offer": {"$ref": "#/components/schemas/SurveyOffer"},
            "exit": {
                "type": "boolean",
                "const": True,
                "description": "Additive: present (true) only when the person typed the exit "
                "word. The conversation is closed and nothing typed is kept; a client should "
                "at once do what its quick exit does (the widget: clear the chat and leave "
                "the page for a neutral one).",
            },
        },
        "if": {"required": ["step"], "properties": {"step": {"const": "summary"}}},
        "then": {"required": ["summary"]},
        "else": {"not": {"required": ["summary"]}},
    },
    "Created": {
        "allOf": [
            {"$ref": "#/components/schemas/Reply"},
            {
                "type": "object",
                "required": ["token"],
                "properties": {
                    "token": {
                        "type": "string",
                        "description": "Shown once; send it as Authorization: Bearer <token>.",
                    }
                },
            },
        ]
    },
    "TranscriptEntry": {
        "type": "object",
        "required": ["role", "at"],
        "properties": {
            "role": {"enum": ["user", "bot"]},
            "at": {"type": "string", "format": "date-time"},
            "text": _STRING,
            "kind": {"enum": ["text", "choice", "command"]},
            "value": {
                "type": "string",
                "description": "A person's line: what was sent (a choice id, a command). A "
                "bot's line: the answer a question being changed had then.",
            },
            "refused": {
                "enum": ["too_long"],
                "description": "The answer was refused and is not kept; `length` says how long.",
            },
            "length": {"type": "integer", "minimum": 0},
            "choices": {"type": "array", "items": {"$ref": "#/components/schemas/Choice"}},
            "input": {"enum": ["choice", "text", "none"]},
            "links": {"type": "array", "items": {"$ref": "#/components/schemas/Link"}},
            "summary": {"type": "array", "items": {"$ref": "#/components/schemas/SummaryRow"}},
        },
    },
    "View": {
        "allOf": [
            {"$ref": "#/components/schemas/Reply"},
            {
                "type": "object",
                "required": ["transcript"],
                "properties": {
                    "transcript": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/TranscriptEntry"},
                        "description": "The latest part of the conversation, oldest first; "
                        "bounded in size, so a very long conversation shows its end.",
                    }
                },
            },
        ]
    },
    "CreateRequest": {
        "type": "object",
        "properties": {
            "locale": {"type": "string", "maxLength": 200},
            "survey_for": {
                "type": "string",
                "format": "uuid",
                "description": "Start the survey a submitted conversation offers "
                "(`survey_offer`), sending that conversation's token as the bearer token. The "
                "reply is a new conversation (its own token) in the same language; 409 "
                "`survey_not_offered` when there is no such offer for this client.",
            },
        },
    },
    "TurnRequest": {
        "type": "object",
        "description": "Exactly one of text, choice or command; an invalid answer is a 200 "
        "turn with a re-prompt, not an HTTP error.",
        "oneOf": [
            {
                "required": ["text"],
                "not": {"anyOf": [{"required": ["choice"]}, {"required": ["command"]}]},
            },
            {
                "required": ["choice"],
                "not": {"anyOf": [{"required": ["text"]}, {"required": ["command"]}]},
            },
            {
                "required": ["command"],
                "not": {"anyOf": [{"required": ["text"]}, {"required": ["choice"]}]},
            },
        ],
        "properties": {
            "text": _STRING,
            "choice": {"type": "string", "minLength": 1, "maxLength": 200},
            "command": {"enum": ["back", "restart", "help", "privacy", "language", "cancel"]},
            "client_message_id": {
                "type": "string",
                "minLength": 1,
                "maxLength": 100,
                "description": "The client's retry key: a repeat returns the same reply.",
            },
        },
    },
    "UiText": {
        "type": "object",
        "required": ["locale", "dir", "text"],
        "properties": {
            "locale": _STRING,
            "dir": {"enum": ["ltr", "rtl"]},
            "text": {"type": "object", "additionalProperties": _STRING},
        },
    },
}


def _errors(*statuses: str) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status in statuses:
        response: dict[str, Any] = {
            "description": _ERROR_STATUSES[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        if status in ("429", "503"):
            response["headers"] = _RETRY_AFTER
        responses[status] = response
    return responses


def _ok(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


_CONVERSATION_ID = {
    "name": "conversation_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Care feedback intake: web chat API",
        "version": "1.0.0",
        "description": "One conversation, one question at a time. Every error is "
        '`{"error": {"code", "message"}}` with the status listed; no answer is ever a 5xx '
        "other than 503 (retry).",
    },
    "paths": {
        "/api/v1/conversations": {
            "post": {
                "operationId": "createConversation",
                "summary": "Start a conversation (locale from the body, else Accept-Language), "
                "or the survey a submitted conversation offers (`survey_for`).",
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/CreateRequest"}
                        }
                    },
                },
                "responses": {
                    "201": _ok("The welcome, with the conversation's token.", "Created"),
                    **_errors("400", "401", "403", "408", "409", "413", "415", "429", "503"),
                },
            }
        },
        "/api/v1/conversations/{conversation_id}/messages": {
            "post": {
                "operationId": "sendMessage",
                "summary": "One turn: an answer, a choice or a command.",
                "parameters": [_CONVERSATION_ID],
                "security": _BEARER,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/TurnRequest"}}
                    },
                },
                "responses": {
                    "200": _ok("The reply: the next question, or a re-prompt.", "Reply"),
                    **_errors("400", "401", "403", "404", "408", "413", "415", "429", "503"),
                },
            }
        },
        "/api/v1/conversations/{conversation_id}": {
            "get": {
                "operationId": "viewConversation",
                "summary": "The current question and the transcript, to resume a reloaded page.",
                "parameters": [_CONVERSATION_ID],
                "security": _BEARER,
                "responses": {
                    "200": _ok("The current step and the transcript.", "View"),
                    **_errors("401", "403", "404", "429", "503"),
                },
            }
        },
        "/api/v1/ui-text": {
            "get": {
                "operationId": "uiText",
                "summary": "The widget's own words in a language.",
                "parameters": [
                    {"name": "locale", "in": "query", "required": False, "schema": _STRING}
                ],
                "responses": {
                    "200": _ok("Button labels and status texts.", "UiText"),
                    **_errors("403", "429"),
                },
            }
        },
        OPENAPI_PATH: {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "responses": {"200": {"description": "OpenAPI 3.1"}, **_errors("403")},
            }
        },
    },
    "components": {
        "schemas": _SCHEMAS,
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
}

_BODY = json.dumps(DOCUMENT, ensure_ascii=False, sort_keys=True).encode("utf-8")


def document() -> dict[str, Any]:
    """A copy of the document (callers may resolve or change it)."""
    return copy.deepcopy(DOCUMENT)


async def get_openapi(request: web.Request) -> web.Response:
    return web.Response(body=_BODY, content_type="application/json", charset="utf-8")
