"""llm_requests.first_event_ns: the first choice-carrying SSE event (vLLM's client's TTFT point)

Revision ID: 0004_first_event
Revises: 0003_model_meta
Create Date: 2026-12-02 22:50:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004_first_event'
down_revision = '0003_model_meta'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('llm_requests') as batch:
        batch.add_column(sa.Column('first_event_ns', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('llm_requests') as batch:
        batch.drop_column('first_event_ns')
