"""GPU telemetry: memory utilization, memory clock, throttle reasons, energy counter, processes

Revision ID: 0002_gpu_telemetry
Revises: 0001
Create Date: 2026-12-02 15:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002_gpu_telemetry'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('telemetry_samples', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mem_util_pct', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('mem_clock_mhz', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('throttle_reasons', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('energy_mj', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('processes', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('telemetry_samples', schema=None) as batch_op:
        batch_op.drop_column('processes')
        batch_op.drop_column('energy_mj')
        batch_op.drop_column('throttle_reasons')
        batch_op.drop_column('mem_clock_mhz')
        batch_op.drop_column('mem_util_pct')
