"""The three stores a study writes, and how each looks inside: the registry (hpo's own record of studies, trials and
confirmation reruns, SQLAlchemy with Alembic migrations), MLflow (one client factory in :mod:`.tracking`; the
study's runs in :mod:`.study_run`, refit and ensemble runs in :mod:`.model_runs`), and the checkpoint store
(:mod:`.checkpoints`, with :mod:`.retention` deciding what is kept). Optuna's storage is written by the study
ledger through Optuna's own API.

Each store has one writer: the registry's SQL is in :mod:`.registry` only, every MLflow write is in this package,
and the ledger (:mod:`hpo.study.ledger`) is the only caller that decides what a trial's state is.

May import: :mod:`hpo.config` and the shared top-level modules. Never :mod:`hpo.study`, :mod:`hpo.models`,
:mod:`hpo.reporting` or :mod:`hpo.cli`.
"""
