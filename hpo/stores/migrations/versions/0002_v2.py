"""v2: tables prefixed hpo_ (out of the way of Optuna's `studies` and `trials` in a shared database),
`hpo_trials.fail_reason`, `hpo_studies.ray_job_id`. Renames a v1 store's tables, or creates them.

Revision ID: 0002_v2
Revises: 0001_v1
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_v2"
down_revision = "0001_v1"


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("studies") and sa.inspect(op.get_bind()).has_table("hpo_schema"):
        op.rename_table("studies", "hpo_studies")
        op.rename_table("trials", "hpo_trials")
        op.add_column("hpo_trials", sa.Column("fail_reason", sa.String(16)))
        op.add_column("hpo_studies", sa.Column("ray_job_id", sa.String(128)))
        return
    op.create_table(
        "hpo_studies",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("config_yaml", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("stop_reason", sa.String(200)),
        sa.Column("num_samples", sa.Integer, nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("heartbeat_at", sa.DateTime),
        sa.Column("driver_host", sa.String(255)),
        sa.Column("driver_pid", sa.Integer),
        sa.Column("elapsed_s", sa.Float, nullable=False),
        sa.Column("ray_path", sa.Text),
        sa.Column("ray_job_id", sa.String(128)),
        sa.Column("optuna_url", sa.Text),
        sa.Column("mlflow_experiment_id", sa.String(64)),
        sa.Column("mlflow_parent_run_id", sa.String(64)),
        sa.Column("best_trial_number", sa.Integer),
        sa.Column("best_metric", sa.Float),
        sa.Column("best_params", sa.JSON),
        sa.Column("best_checkpoint", sa.Text),
        sa.Column("best_model_uri", sa.Text),
    )
    op.create_table(
        "hpo_trials",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("hpo_studies.id"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("fail_reason", sa.String(16)),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("ray_trial_id", sa.String(64)),
        sa.Column("mlflow_run_id", sa.String(64)),
        sa.Column("epochs", sa.Integer, nullable=False),
        sa.Column("last_metric", sa.Float),
        sa.Column("best_metric", sa.Float),
        sa.Column("checkpoint", sa.Text),
        sa.Column("ray_trial_dir", sa.Text),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("study_id", "number"),
    )
