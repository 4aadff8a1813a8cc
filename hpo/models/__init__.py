"""What a study's models become after the search: ``hpo refit`` (:mod:`.refit`), ``hpo ensemble`` (:mod:`.ensemble`),
a Hugging Face folder with a model card and an ONNX file (:mod:`.export`, :mod:`.card`).

May import: :mod:`hpo.config`, :mod:`hpo.stores` and the shared top-level modules. Not :mod:`hpo.study`: the
data preparation a refit or an ensemble needs is passed in by the caller (the CLI), so the two stay independent.
"""
