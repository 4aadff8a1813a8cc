"""v6: a trial may be `stopped` (cut short because its study's budget or stop rule ended the study; pruned meant
that before). No column changes: the revision is what makes an older hpo, which cannot read the new value, refuse
the registry with "schema is newer than this hpo; upgrade hpo" instead of failing on the first such trial.

Revision ID: 0006_v6
Revises: 0005_v5
"""

revision = "0006_v6"
down_revision = "0005_v5"


def upgrade() -> None:
    pass
