"""``hpo distill``: a study's winner taught to a small model, as a study of its own.

Why: the search often crowns a large model (all-mpnet-base-v2 beats MiniLM-L6 by points) that costs several times
as much per prediction, and users ship the small one. Distillation (Hinton et al. 2015; DistilBERT) trains the small
model on the large one's outputs as well as on the labels. This module composes the student's study from the teacher
study's own config: same task, data, budget and scheduler; ``model=`` the student; ``distill.teacher`` the teacher
study's registered version, whose temperature and weight are then searched (``distill.search``). The comparison of
teacher, plain and distilled student is the report's (:mod:`hpo.reporting._distillation`). Example::

    hpo sweep search=models study.name=sst2_models                  # the teacher: the search's champion
    hpo distill sst2_models --student minilm_l6 study.num_samples=8  # study sst2_models-distilled-minilm_l6
    mlflow.pyfunc.load_model("models:/sst2_models@distilled")        # the best student, registered beside it
"""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hpo.config.compose import compose, stored_config
from hpo.config.resolvers import CONFIG_DIR
from hpo.config.search_space import MODEL
from hpo.config.sections import DISTILLED, PLAIN, as_study_config, distill_name
from hpo.errors import ConfigError
from hpo.model_uri import ModelUri
from hpo.stores.registry import StudyRecord
from hpo.stores.tracking import CHAMPION


def distill_config(record: StudyRecord, student: str, alias: str | None = CHAMPION, overrides: Sequence[str] = (),
                   given: Sequence[str] = ()) -> DictConfig:
    """The student's study config: ``record``'s config with ``model`` the student (a ``conf/model`` name, or a
    folder or hub name) and ``distill.teacher`` the teacher study's version under ``alias`` (None: the plain student,
    trained on the labels alone with the same budget); the model is no longer searched. ``overrides``
    (``key=value``) come last. ``given``: URLs whose passwords fill masked ones."""
    if bad := [o for o in overrides if "=" not in o]:
        raise ConfigError("overrides", f"{bad[0]!r}: write key=value (e.g. study.num_samples=8)")
    cfg = stored_config(record.config_yaml, given)
    model = [f"model={student}"] if (CONFIG_DIR / "model" / f"{student}.yaml").is_file() \
        else ["model=hf", f"model.name_or_path={student}"]  # conf/model/hf.yaml: any folder or hub name
    defaults = compose([*model, f"storage.root={cfg.storage.root}"])
    cfg.model = defaults.model
    if OmegaConf.select(cfg, f"search.{MODEL}") is not None:  # a search=models teacher study: one model now
        cfg.search.pop(MODEL)
        cfg.search.model_choice = "sampler"
        cfg.search.first_trial = defaults.search.first_trial
    cfg.study.name = distill_name(record.name, student, DISTILLED if alias else PLAIN)
    cfg.distill.teacher = str(ModelUri(record.name, alias, None)) if alias else None
    try:
        merged = as_study_config(OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides))))
    except (OmegaConfBaseException, ValueError) as err:
        raise ConfigError("overrides", f"{str(err).splitlines()[0]}; write key=value") from None
    if "seed" in merged.sampler and not any(o.startswith("sampler.seed=") for o in overrides):
        merged.sampler.seed = merged.study.seed  # conf/sampler's ${study.seed}, which the stored config resolved
    return merged
