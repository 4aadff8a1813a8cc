"""The benchmark suite: eight datasets of five kinds, each a study's Hydra overrides at a fixed small size (about
1,000 training rows, max length 64, images at 64 px, its own validation split), and the models recorded on each:
a small one (``configs`` random configs) and a larger one of the same task (fewer), so that model choice and its
cost are part of what the suite measures.

TREC, SMS Spam and MNIST are kept out on purpose: they are held aside to check the suite's conclusions
independently.

    >>> sorted(SUITE)[:3], len(SUITE)
    (['banking77', 'cifar10', 'dbpedia14'], 8)
    >>> SUITE["stsb"].kind
    'regression, pairs'
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SuiteModel:
    name: str  # a conf/model/ entry
    configs: int  # random configs of the default space recorded for it
    cost: float = 1.0  # epoch seconds relative to the dataset's small model (measured): the recording goes cheap first


@dataclass(frozen=True)
class SuiteDataset:
    name: str
    kind: str  # what it adds to the suite's variety
    overrides: tuple[str, ...]  # a study of it, on top of conf/config.yaml
    models: tuple[SuiteModel, ...]
    metric: str = "val_accuracy"  # the task's default objective (every suite metric is maximized)

    @property
    def small(self) -> str:
        return self.models[0].name


TEXT = ("trainer.max_length=64",)
TEXT_MODELS = (SuiteModel("minilm_l6", 16), SuiteModel("mpnet_base", 4, cost=5.0))
IMAGE = ("task=image_classification", "search=images", "data.image_size=64")
IMAGE_MODELS = (SuiteModel("efficientnet_lite0", 16), SuiteModel("efficientnet_lite2", 4, cost=1.5))

SUITE: dict[str, SuiteDataset] = {d.name: d for d in (
    SuiteDataset("sst2", "binary", (*TEXT, "data=sst2", "data.train_limit=1000", "data.validation_limit=500"),
                 TEXT_MODELS),
    SuiteDataset("emotion", "6 classes, imbalanced (3% to 34%)", (*TEXT, "data=emotion"), TEXT_MODELS),
    SuiteDataset("dbpedia14", "14 classes", (*TEXT, "data=dbpedia14"), TEXT_MODELS),
    SuiteDataset("banking77", "77 classes, 13 rows each", (*TEXT, "data=banking77"), TEXT_MODELS),
    SuiteDataset("mrpc", "pairs, binary (68% positive)", (*TEXT, "data=mrpc"), TEXT_MODELS),
    SuiteDataset("stsb", "regression, pairs", (*TEXT, "task=text_regression", "data=stsb", "data.train_limit=1000"),
                 TEXT_MODELS, "val_spearman"),
    SuiteDataset("fashion_mnist", "images, 10 classes, grayscale",
                 (*IMAGE, "data=fashion_mnist", "data.train_limit=1000", "data.validation_limit=500"), IMAGE_MODELS),
    SuiteDataset("cifar10", "images, 10 classes, colour", (*IMAGE, "data=cifar10"), IMAGE_MODELS),
)}
