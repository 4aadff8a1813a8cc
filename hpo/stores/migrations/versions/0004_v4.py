"""v4: `hpo_confirmations`, the seed-only reruns of a study's top configs (`confirm.top_k`).

Revision ID: 0004_v4
Revises: 0003_v3
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_v4"
down_revision = "0003_v3"


def upgrade() -> None:
    op.create_table(
        "hpo_confirmations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("hpo_studies.id"), nullable=False),
        sa.Column("trial_number", sa.Integer, nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("best_metric", sa.Float),
        sa.Column("epochs", sa.Integer, nullable=False),
        sa.Column("mlflow_run_id", sa.String(64)),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("study_id", "trial_number", "seed"),
    )
