"""From Hydra's ``conf/`` tree to a checked, inert :class:`~hpo.config.spec.StudySpec`.

Lives here: composing ``conf/`` (:mod:`.compose`), the checks of each config section (:mod:`.sections`), the spec
types (:mod:`.spec`), the search space over Optuna distributions (:mod:`.search_space`), the pretrained model as a
search dimension (:mod:`.model_choice`), the model checks (:mod:`.model_check`), override checks
(:mod:`.overrides`) and hpo's OmegaConf resolvers (:mod:`.resolvers`). Every refusal of bad input happens here,
before anything is recorded.

May import: the shared top-level modules (:mod:`hpo.errors`, :mod:`hpo.secrets`, ...) and :mod:`trainers`.
Nothing here writes to a store.
"""
