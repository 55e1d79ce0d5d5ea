"""analyses.save_key: the same result or batch saved twice is one history item

Revision ID: 7d1e3a9c5b20
Revises: 2c55df2dca18
Create Date: 2026-12-03 19:55:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '7d1e3a9c5b20'
down_revision = '2c55df2dca18'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('analyses', schema=None) as batch_op:
        batch_op.add_column(sa.Column('save_key', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_analyses_user_id'), ['user_id', 'save_key'])


def downgrade():
    with op.batch_alter_table('analyses', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_analyses_user_id'), type_='unique')
        batch_op.drop_column('save_key')
