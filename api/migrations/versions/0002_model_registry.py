"""model registry: models, promotion requests (maker-checker) and stage transitions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 14:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('models',
    sa.Column('id', sa.String(length=64), nullable=False, comment='content hash of the four artifacts'),
    sa.Column('stage', sa.String(length=16), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False, comment='who registered the model'),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('operator', sa.String(length=64), nullable=False, comment='who ran the training'),
    sa.Column('training_started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('training_finished_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('data_source', sa.JSON(), nullable=False),
    sa.Column('data_checksum', sa.String(length=64), nullable=False),
    sa.Column('time_window_start', sa.Date(), nullable=True),
    sa.Column('time_window_end', sa.Date(), nullable=True),
    sa.Column('rows', sa.BigInteger(), nullable=False),
    sa.Column('code_version', sa.String(length=128), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('model_metadata', sa.JSON(), nullable=False),
    sa.Column('artifact_dir', sa.String(length=1024), nullable=False),
    sa.Column('model_sha256', sa.String(length=64), nullable=False),
    sa.Column('calibrator_sha256', sa.String(length=64), nullable=False),
    sa.Column('report_sha256', sa.String(length=64), nullable=False),
    sa.Column('metadata_sha256', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_models')),
    comment='probability-of-default models: artifacts, traceability fields and current stage'
    )
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_models_stage'), ['stage'], unique=False)

    op.create_table('model_promotion_requests',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('model_id', sa.String(length=64), nullable=False),
    sa.Column('to_stage', sa.String(length=16), nullable=False),
    sa.Column('requested_by', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False, comment='pending, approved, rejected or superseded'),
    sa.Column('decided_by', sa.String(length=64), nullable=True),
    sa.Column('decision_reason', sa.Text(), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_model_promotion_requests_model_id_models')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_promotion_requests')),
    comment='maker-checker: promotions to champion wait here for a second person'
    )
    with op.batch_alter_table('model_promotion_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_model_promotion_requests_model_id'), ['model_id'], unique=False)

    op.create_table('model_transitions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('model_id', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=24), nullable=False, comment='registered, promoted, replaced, rolled_back, restored or retired'),
    sa.Column('from_stage', sa.String(length=16), nullable=True),
    sa.Column('to_stage', sa.String(length=16), nullable=False),
    sa.Column('requested_by', sa.String(length=64), nullable=False),
    sa.Column('approved_by', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_model_transitions_model_id_models')),
    sa.ForeignKeyConstraint(['request_id'], ['model_promotion_requests.id'], name=op.f('fk_model_transitions_request_id_model_promotion_requests')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_transitions')),
    comment='every stage change of every model: who, when, why (append-only)'
    )
    with op.batch_alter_table('model_transitions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_model_transitions_model_id'), ['model_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('model_transitions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_model_transitions_model_id'))
    op.drop_table('model_transitions')
    with op.batch_alter_table('model_promotion_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_model_promotion_requests_model_id'))
    op.drop_table('model_promotion_requests')
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_models_stage'))
    op.drop_table('models')
