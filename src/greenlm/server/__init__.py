"""The dashboard and the team server: HTML pages over the run store and an ingest API.

``greenlm dashboard`` serves the pages on loopback; ``greenlm server serve`` serves the same
app to a team, with bearer tokens on ingest (always) and on reads (when not on loopback).
Trackers send runs with :class:`greenlm.tracking.outbox.HttpSink`. The web parts need the
``server`` extra (fastapi, uvicorn, jinja2, httpx); importing this package needs nothing.
"""
