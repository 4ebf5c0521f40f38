"""JSON encoding on the hot path: every turn's answer body (and, for storage, what it writes).

One function over orjson, which encodes the same value several times faster than the standard
library's `json.dumps` (it was about 7% of the server's CPU per web turn, each message encoded
up to three times). What differs from `json.dumps`'s defaults, and why it does not matter here:

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
"""

from __future__ import annotations

from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """`value` as compact UTF-8 JSON. Raises TypeError for what JSON cannot say (see above)."""
    return orjson.dumps(value)
