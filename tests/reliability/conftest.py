"""Fixtures of the reliability tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # faultkit, fault_server

import faultkit  # noqa: E402


@pytest.fixture(autouse=True)
def _preexisting_children() -> None:
    """Children of pytest alive before the test are not the test's orphans (faultkit.assert_no_orphans)."""
    faultkit.note_preexisting_children()
