"""Bolt listeners: each module has register(app, deps); each listener acks first, then calls a handler."""
