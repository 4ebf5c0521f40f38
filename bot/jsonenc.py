"""JSON encoding on the hot path: every web answer body, and what a turn stores (its state,
transcript lines and kept reply, in storage/turns.py).

One function over orjson, which encodes the same value several times faster than the standard
library's `json.dumps` (JSON encoding was about 7% of the server's CPU per web turn, each bot
message encoded up to three times: its transcript line, the reply kept for a retried message id
and the answer body). What differs from `json.dumps`'s defaults, and why it does not matter:

- The result is UTF-8 bytes, compact (no spaces after `,` and `:`), with non-ASCII characters
  as they are rather than `\\uXXXX` escapes. Both are the same JSON: any decoder reads back the
  same value, and SQLite (text) and PostgreSQL (JSONB) store what reads back the same.
- Keys must be strings (`json.dumps` quietly turns `1` into `"1"`, which would not read back
  as the same dict anyway), and a string must be text: a lone surrogate raises
  `TypeError` instead of being escaped. Nothing the channels let in carries one (the web
  refuses them; PostgreSQL could not store them).
- Where a driver wants text (SQLite's JSON columns, asyncpg's `jsonb` parameters), decode the
  bytes: `dumps(value).decode()`.
- NaN and infinities become `null` (`json.dumps` writes `NaN`, which is not JSON). Nothing
  encoded here is a float.
- Dates and dataclasses are refused, as `json.dumps` refuses them (orjson would write them
  on its own terms): a value that is not plain JSON is a bug to see, not to store.
"""

from __future__ import annotations

from typing import Any

import orjson

_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def dumps(value: Any) -> bytes:
    """`value` as compact UTF-8 JSON. Raises TypeError for what JSON cannot say (see above)."""
    return orjson.dumps(value, option=_STRICT)
