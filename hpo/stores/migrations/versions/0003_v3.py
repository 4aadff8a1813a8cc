"""v3: `hpo_trials.curve`, the objective's value per epoch (so a resume can replay into Optuna and MLflow any
epoch a crash kept from them); the hand-rolled `hpo_schema` version table gives way to Alembic's.

Revision ID: 0003_v3
Revises: 0002_v2
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_v3"
down_revision = "0002_v2"


def upgrade() -> None:
    with op.batch_alter_table("hpo_trials") as batch:
        batch.add_column(sa.Column("curve", sa.JSON))
    if sa.inspect(op.get_bind()).has_table("hpo_schema"):
        op.drop_table("hpo_schema")
