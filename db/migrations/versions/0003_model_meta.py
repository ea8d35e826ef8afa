"""models.meta: where a model came from (e.g. the export that made it)

Revision ID: 0003_model_meta
Revises: 0002_gpu_telemetry
Create Date: 2026-12-02 16:10:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0003_model_meta'
down_revision = '0002_gpu_telemetry'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('models') as batch:
        batch.add_column(sa.Column('meta', sa.JSON(), nullable=False, server_default=sa.text("'{}'")))


def downgrade() -> None:
    with op.batch_alter_table('models') as batch:
        batch.drop_column('meta')
