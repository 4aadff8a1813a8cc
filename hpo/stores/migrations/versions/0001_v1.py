"""v1: the first registry layout (tables `studies` and `trials`), written by hpo before Alembic managed it.

A store created by this version is stamped here when first opened; a new store passes through as a no-op
(v1's table names clash with Optuna's, so 0002 creates the renamed tables instead).

Revision ID: 0001_v1
Revises:
"""

revision = "0001_v1"
down_revision = None


def upgrade() -> None:
    pass
