"""Streamlit dashboard of EngineScope. Reads the database, writes Jobs; never runs an engine."""
