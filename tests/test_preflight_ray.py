"""What the study checks against the live Ray before anything is recorded (the session's test Ray)."""

import pytest

from hpo.config.compose import build_spec, compose
from hpo.errors import ConfigError
from hpo.stores.registry import Registry
from hpo.study.run import run_study


@pytest.mark.integration
def test_a_trial_no_node_can_hold_stops_the_study_before_anything_is_recorded(small_sst2, tiny_bert, local_ray,
                                                                               tmp_path):
    spec = build_spec(compose([
        "model=hf", f"model.name_or_path={tiny_bert}", "data=csv", f"data.train_path={small_sst2['train']}",
        f"data.validation_path={small_sst2['dev']}", "study.name=no_gpu", "resources.gpu=1", f"storage.root={tmp_path}",
    ]))
    with pytest.raises(ConfigError, match=r"resources.gpu: a trial needs 1 CPU and 1 GPU but the largest node has"):
        run_study(spec)
    assert Registry.open(spec.storage.registry_url).list_studies() == []
    assert not (tmp_path / "mlflow.db").exists()
