"""What a study's models become after the search: ``hpo refit`` (:mod:`.refit`), ``hpo ensemble`` (:mod:`.ensemble`),
a Hugging Face folder with a model card and an ONNX file (:mod:`.export`, :mod:`.card`), the config of a study that
distils the winner into a small model (``hpo distill``, :mod:`.distill`).

May import: :mod:`hpo.config`, :mod:`hpo.stores` and the shared top-level modules. Not :mod:`hpo.study`: the
data preparation a refit or an ensemble needs is passed in by the caller (the CLI), so the two stay independent.
"""
