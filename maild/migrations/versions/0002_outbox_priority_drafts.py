"""outbox: priority (requesters' mail before operators' copies), drafts (mail
composed by the sender) and the owner of a lease

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07 21:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('priority', sa.SmallInteger(), nullable=False, server_default='5')
        )
        batch_op.create_index(
            'ix_outbox_claim', ['status', 'priority', 'next_attempt_at'], unique=False
        )
        batch_op.add_column(sa.Column('draft', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=300), nullable=True))
        batch_op.alter_column('data', existing_type=sa.LargeBinary(), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.alter_column('data', existing_type=sa.LargeBinary(), nullable=False)
        batch_op.drop_column('claimed_by')
        batch_op.drop_column('draft')
        batch_op.drop_index('ix_outbox_claim')
        batch_op.drop_column('priority')
