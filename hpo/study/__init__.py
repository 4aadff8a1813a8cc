"""Running a study: :func:`.run.run_study` tells the whole story (checks, data, stores, Ray Tune, confirmation,
the end), one call into a module with one job per step.

Lives here: the study's data preparation (:mod:`.data`), the preflight checks (:mod:`._preflight`, :mod:`._capacity`),
the driver's lease, stop rules and signal handling (:mod:`._lease`, :mod:`.stopping`, :mod:`.signals`), the ledger,
the one writer of trial state (:mod:`.ledger`), Ray Tune's side (:mod:`._tuner`, :mod:`._searcher`, :mod:`.trial`,
which runs in a Ray worker), resuming (:mod:`.resume`), where a study starts (:mod:`.warm_start`, the learned
:mod:`.portfolio`), how a study that searches the model treats models of unequal cost (:mod:`.per_model_asha`,
:mod:`.model_pick`), confirmation reruns (:mod:`._reruns`) and Ray Jobs (:mod:`.launch`).

May import: :mod:`hpo.config`, :mod:`hpo.stores`, :mod:`hpo.reporting` and the shared top-level modules.
"""
