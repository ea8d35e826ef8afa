"""Pure functions of EngineScope: parse tool outputs into typed records, statistics, comparisons.

No database, no UI, no subprocesses. Everything here is importable without heavy packages.
"""
