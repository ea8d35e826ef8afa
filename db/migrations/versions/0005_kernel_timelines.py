"""kernel timelines (gpu_activities, cuda_api_calls, trace_ranges) and Nsight Compute metrics (kernel_metrics)

Revision ID: 0005_kernel_timelines
Revises: 0004_first_event
Create Date: 2026-12-03 15:20:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0005_kernel_timelines'
down_revision = '0004_first_event'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'gpu_activities',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(16), nullable=False),
        sa.Column('name', sa.Text(), nullable=False),
        sa.Column('category', sa.String(32), nullable=False),
        sa.Column('start_ns', sa.BigInteger(), nullable=False),
        sa.Column('duration_ns', sa.BigInteger(), nullable=False),
        sa.Column('device', sa.Integer()),
        sa.Column('stream', sa.BigInteger()),
        sa.Column('correlation_id', sa.BigInteger()),
        sa.Column('launch_ns', sa.BigInteger()),
        sa.Column('grid', sa.JSON()),
        sa.Column('block', sa.JSON()),
        sa.Column('registers_per_thread', sa.Integer()),
        sa.Column('shared_mem_bytes', sa.BigInteger()),
        sa.Column('bytes', sa.BigInteger()),
        sa.Column('copy_kind', sa.String(16)),
        sa.Column('op', sa.Text()),
        sa.Column('iteration', sa.Integer()),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_gpu_activities_run_id_runs'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_gpu_activities')),
    )
    op.create_index(op.f('ix_gpu_activities_run_id'), 'gpu_activities', ['run_id'])
    op.create_table(
        'cuda_api_calls',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(16), nullable=False),
        sa.Column('name', sa.String(256), nullable=False),
        sa.Column('start_ns', sa.BigInteger(), nullable=False),
        sa.Column('duration_ns', sa.BigInteger(), nullable=False),
        sa.Column('thread_id', sa.BigInteger()),
        sa.Column('correlation_id', sa.BigInteger()),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_cuda_api_calls_run_id_runs'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_cuda_api_calls')),
    )
    op.create_index(op.f('ix_cuda_api_calls_run_id'), 'cuda_api_calls', ['run_id'])
    op.create_table(
        'trace_ranges',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('start_ns', sa.BigInteger(), nullable=False),
        sa.Column('end_ns', sa.BigInteger(), nullable=False),
        sa.Column('thread_id', sa.BigInteger()),
        sa.Column('domain', sa.String(256)),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_trace_ranges_run_id_runs'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_trace_ranges')),
    )
    op.create_index(op.f('ix_trace_ranges_run_id'), 'trace_ranges', ['run_id'])
    op.create_table(
        'kernel_metrics',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('name', sa.Text(), nullable=False),
        sa.Column('short_name', sa.String(512), nullable=False),
        sa.Column('category', sa.String(32), nullable=False),
        sa.Column('duration_ns', sa.BigInteger()),
        sa.Column('achieved_occupancy_pct', sa.Float()),
        sa.Column('sm_throughput_pct', sa.Float()),
        sa.Column('dram_throughput_pct', sa.Float()),
        sa.Column('flop', sa.Float()),
        sa.Column('dram_bytes', sa.Float()),
        sa.Column('arithmetic_intensity', sa.Float()),
        sa.Column('flop_per_s', sa.Float()),
        sa.Column('grid', sa.JSON()),
        sa.Column('block', sa.JSON()),
        sa.Column('metrics', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_kernel_metrics_run_id_runs'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_kernel_metrics')),
    )
    op.create_index(op.f('ix_kernel_metrics_run_id'), 'kernel_metrics', ['run_id'])


def downgrade() -> None:
    for table in ('kernel_metrics', 'trace_ranges', 'cuda_api_calls', 'gpu_activities'):
        op.drop_index(op.f(f'ix_{table}_run_id'), table_name=table)
        op.drop_table(table)
