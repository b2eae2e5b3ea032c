"""Runs migration steps as jobs from a Redis-backed queue (RQ), one server at a time."""
