"""CLI command modules; each exposes ``register(app)``."""

#: ``--db-url``'s help, the same on every command.
DB_URL_HELP = "SQLAlchemy URL (default: $ENGINESCOPE_DB_URL or SQLite in $ENGINESCOPE_HOME)"
