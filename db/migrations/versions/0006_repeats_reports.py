"""repeat index on latency samples and load points (``--repeats``), and saved reports

Revision ID: 0006_repeats_reports
Revises: 0005_kernel_timelines
Create Date: 2026-12-03 19:10:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0006_repeats_reports'
down_revision = '0005_kernel_timelines'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('latency_samples') as batch:
        batch.add_column(sa.Column('repeat', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('load_points') as batch:
        batch.add_column(sa.Column('repeat', sa.Integer(), nullable=False, server_default='0'))
    op.create_table(
        'reports',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('title', sa.String(512), nullable=False),
        sa.Column('author', sa.String(256)),
        sa.Column('notes', sa.Text()),
        sa.Column('baseline_run_id', sa.Integer()),
        sa.Column('run_ids', sa.JSON(), nullable=False),
        sa.Column('metric', sa.String(64)),
        sa.Column('charts', sa.JSON(), nullable=False),
        sa.Column('options', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True)),
        sa.ForeignKeyConstraint(['baseline_run_id'], ['runs.id'], name=op.f('fk_reports_baseline_run_id_runs'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_reports')),
    )
    op.create_index(op.f('ix_reports_created_at'), 'reports', ['created_at'])


def downgrade() -> None:
    op.drop_index(op.f('ix_reports_created_at'), table_name='reports')
    op.drop_table('reports')
    with op.batch_alter_table('load_points') as batch:
        batch.drop_column('repeat')
    with op.batch_alter_table('latency_samples') as batch:
        batch.drop_column('repeat')
