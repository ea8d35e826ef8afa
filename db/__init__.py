"""EngineScope's database: SQLAlchemy 2 typed models, engine/session helpers, Alembic migrations.

``db`` imports nothing of ours except ``profiles`` record types/errors.
"""
