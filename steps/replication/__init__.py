"""Logical replication's server-side work: readiness, setup, status, drain and cleanup of one migration's objects."""
