"""What a person reads: the study report (:mod:`.report`, figures in :mod:`.plots`, the models table in
:mod:`._model_costs`, teacher against students in :mod:`._distillation`), the end-of-study summary
(:mod:`.summary`), live progress (:mod:`.progress`) and the MLflow UI (:mod:`.ui`). Reads the stores; writes files,
never a store (the report reaches MLflow through the ledger or ``hpo report``).

May import: :mod:`hpo.config`, :mod:`hpo.stores` and the shared top-level modules.
"""
