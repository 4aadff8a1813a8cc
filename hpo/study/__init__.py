"""Running a study: :func:`.run.run_study` tells the whole story (checks, data, stores, Ray Tune, confirmation,
the end), one call into a module with one job per step.

Lives here: the study's data preparation (:mod:`.data`), the preflight checks (:mod:`.preflight`, :mod:`.capacity`),
the driver's lease and stop rules (:mod:`.lease`, :mod:`.stopping`), the ledger, the one writer of trial state
(:mod:`.ledger`), Ray Tune's side (:mod:`.tuner`, :mod:`.searcher`, :mod:`.trial`, which runs in a Ray worker),
resuming (:mod:`.resume`), warm starts (:mod:`.warm_start`), confirmation reruns (:mod:`.reruns`) and Ray Jobs
(:mod:`.launch`).

May import: :mod:`hpo.config`, :mod:`hpo.stores`, :mod:`hpo.reporting` and the shared top-level modules.
"""
