"""Config values that must be refused, each with the key the refusal names: one list for every level that checks
them (``build_spec`` in tests/test_config.py, the whole `hpo sweep` in tests/reliability/test_bad_input.py, a real
subprocess in tests/test_cli.py). Cases that need data files or closed ports live beside the tests that make them.
"""

from __future__ import annotations

# (case, overrides, the key the refusal must name)
CONFIG_VALUES: list[tuple[str, list[str], str]] = [
    ("negative lr", ["search.learning_rate.low=-1"], "search.learning_rate.low"),
    ("wrong type", ["study.num_samples=many"], "study.num_samples"),
    ("low above high", ["search.learning_rate.low=1e-3", "search.learning_rate.high=1e-5"], "search.learning_rate"),
    ("empty choices", ["search.batch_size.choices=[]"], "search.batch_size"),
    ("unknown hyperparameter", ["+search.momentum=0.9"], "search.momentum"),
    ("unknown metric", ["study.metric=accuracy"], "study.metric"),
    ("unknown mode", ["study.mode=up"], "study.mode"),
    ("zero epochs", ["trainer.max_epochs=0"], "trainer.max_epochs"),
    ("zero samples", ["study.num_samples=0"], "study.num_samples"),
    ("unknown pooling", ["model.pooling=max"], "model.pooling"),
    ("freeze deeper than the model", ["search.freeze_depth.high=99"], "search.freeze_depth.high"),
    ("unknown feedback", ["search.feedback=sometimes"], "search.feedback"),
    ("zero concurrency", ["study.max_concurrent=0"], "study.max_concurrent"),
    ("tiny max_length", ["trainer.max_length=2"], "trainer.max_length"),
    ("a sampler class that does not exist", ["sampler._target_=optuna.samplers.NoSuchSampler"], "sampler"),
    ("a sampler that runs code", ["sampler._target_=os.system"], "sampler._target_"),
    ("a scheduler that runs code", ["scheduler._target_=subprocess.Popen"], "scheduler._target_"),
    ("a negative grace period", ["scheduler.grace_period=-3"], "scheduler.grace_period"),
    ("a zero grace period", ["scheduler.grace_period=0"], "scheduler.grace_period"),
    ("a grace period past max_t", ["scheduler.grace_period=9"], "scheduler.grace_period"),
    ("a reduction factor of one", ["scheduler.reduction_factor=1"], "scheduler.reduction_factor"),
    ("zero max_t", ["scheduler.max_t=0"], "scheduler.max_t"),
    ("zero brackets", ["scheduler.brackets=0"], "scheduler.brackets"),
    ("hyperband shrinking", ["scheduler=hyperband", "scheduler.reduction_factor=0.5"], "scheduler.reduction_factor"),
    ("median with no one to compare", ["scheduler=median", "scheduler.min_samples_required=0"],
     "scheduler.min_samples_required"),
    ("max_length past the position embeddings", ["trainer.max_length=100000"], "trainer.max_length"),
    ("a retry budget MLflow cannot give", ["tracking.retry_s=5000"], "tracking.retry_s"),
    ("missing model", ["model.name_or_path=/no/such/model"], "model.name_or_path"),
    ("missing train file", ["data.train_path=/no/such.csv"], "data.train_path"),
    ("zero CPU", ["resources.cpu=0"], "resources.cpu"),
    ("negative GPU", ["resources.gpu=-1"], "resources.gpu"),
    ("fractional GPU above one", ["resources.gpu=1.5"], "resources.gpu"),
    ("zero workers per trial", ["resources.workers_per_trial=0"], "resources.workers_per_trial"),
    ("a DDP worker on a GPU share", ["resources.workers_per_trial=2", "resources.gpu=0.5"],
     "resources.workers_per_trial"),
    ("a DDP worker with two GPUs", ["resources.workers_per_trial=2", "resources.gpu=2"], "resources.workers_per_trial"),
    ("DDP with cross-validation", ["resources.workers_per_trial=2", "data.cv_folds=3"], "resources.workers_per_trial"),
    ("a Ray client address", ["cluster.address=ray://head:10001"], "cluster.address"),
    ("checkpoints on FTP", ["storage.checkpoints=ftp://host/x"], "storage.checkpoints"),
    ("name with a space", ["study.name=has space"], "study.name"),
    ("name escaping its folder", ["study.name=../escape"], "study.name"),
    ("name with a slash", ["study.name=a/b"], "study.name"),
]

# Refused by hpo.config.overrides.check_overrides before Hydra composes anything.
OVERRIDES: list[tuple[str, list[str], str]] = [
    ("unknown key", ["+study.nmae=x"], "study.nmae"),
    ("unknown sampler option", ["sampler=bayes"], "sampler"),
    ("unknown scheduler option", ["scheduler=pbt2"], "scheduler"),
]


# Refused by the preflight (hpo.study._preflight), before anything is recorded but after build_spec.
PREFLIGHT: list[tuple[str, list[str], str]] = [
    ("a registry URL of no database", ["registry.url=notaurl://x"], "registry.url"),
    ("an Optuna URL that is no URL", ["storage.optuna_url=garbage"], "storage.optuna_url"),
]


def case(name: str) -> tuple[str, list[str], str]:
    """One case by its name."""
    return next(c for c in CONFIG_VALUES + OVERRIDES + PREFLIGHT if c[0] == name)
