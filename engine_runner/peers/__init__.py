"""Peer benchmark clients run against the same server and load as EngineScope, to cross-check it."""
