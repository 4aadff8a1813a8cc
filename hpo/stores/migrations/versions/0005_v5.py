"""v5: `hpo_trials.objectives`, every objective's value at the trial's best epoch (multi-objective studies).

Revision ID: 0005_v5
Revises: 0004_v4
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_v5"
down_revision = "0004_v4"


def upgrade() -> None:
    with op.batch_alter_table("hpo_trials") as batch:
        batch.add_column(sa.Column("objectives", sa.JSON))
