"""Outgoing messages: one outbox, one dispatcher, a small adapter per kind of delivery.

`dispatcher` claims messages and records outcomes (retries, backoff, dead letters, metrics);
each adapter module sends one kind and sorts its failures into retry-later or permanent:
`email` (SMTP or GOV.UK Notify), `webhook` (Standard Webhooks signing: urgent alerts and the
case-system hand-off). `fanout` turns a submitted report into the messages it needs.
"""
