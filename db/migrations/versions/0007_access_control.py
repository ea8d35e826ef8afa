"""access control: users with roles, and who started each job

Revision ID: 0007_access_control
Revises: 0006_repeats_reports
Create Date: 2026-12-04 19:15:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0007_access_control'
down_revision = '0006_repeats_reports'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('created_by', sa.String(256)))
    op.create_table(
        'users',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(256), nullable=False),
        sa.Column('role', sa.String(16), nullable=False),
        sa.Column('granted_by', sa.String(256)),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
        sa.UniqueConstraint('name', name=op.f('uq_users_name')),
    )


def downgrade() -> None:
    op.drop_table('users')
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('created_by')
