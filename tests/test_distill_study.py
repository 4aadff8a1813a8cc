"""``hpo distill`` end to end with real processes: a teacher study, then its student study SIGKILLed mid-trial and
run again (it resumes, the teacher's outputs read back from the cache, not computed again; the plain student
study of ``--with-plain`` ran first and is not run twice), its best registered as
``models:/TEACHER@distilled``, and both reports holding the comparison. The student is the teacher's own tiny BERT
(self-distillation), so the command warns that it buys no speed. Its refit distils too, from the cached outputs."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from tests.helpers.lifecycle import TINY_SWEEP, Driver, hpo, wait_for, with_overrides
from tests.helpers.stores import assert_stores_agree

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # whole studies
SMALL = with_overrides(TINY_SWEEP, "data.train_limit=300", "data.validation_limit=100")


def test_distill_survives_kill_9_reuses_the_teachers_outputs_and_registers_the_student(tmp_path, sst2_dir):
    teacher = hpo(["sweep", *SMALL, "study.name=teach", "study.num_samples=1", "trainer.max_epochs=1",
                   f"storage.root={tmp_path}"], tmp_path, sst2_dir)
    assert teacher.returncode == 0, teacher.stdout[-3000:] + teacher.stderr[-3000:]

    student, url = "teach-distilled-tiny_bert", f"sqlite:///{tmp_path}/registry.db"
    command = ["distill", "teach", "--student", "tiny_bert", "--with-plain", "study.num_samples=2",
               "trainer.max_epochs=3"]
    first = Driver(command, tmp_path, sst2_dir)
    wait_for(first, url, student, lambda ts: any(t.state == "running" and t.epochs >= 1 for t in ts))
    first.sigkill()
    assert "computed and cached" in first.output() and "not much smaller than the teacher" in first.output()

    again = hpo(command, tmp_path, sst2_dir)
    said = again.stdout + again.stderr
    assert again.returncode == 0, said[-3000:]
    assert f"resuming study {student}" in said and "read from the cache" in said and "computed and" not in said
    assert "plain student study teach-plain-tiny_bert already completed" in said
    assert_stores_agree(url, f"sqlite:///{tmp_path}/mlflow.db", student)

    version = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_model_version_by_alias("teach", "distilled")
    assert version.tags["hpo.student_study"] == student and version.tags["hpo.kind"] == "distilled"
    for study in ("teach", student):
        report = (tmp_path / study / "report" / "report.md").read_text()
        section = report.split("## Distillation", 1)[1].split("\n## ", 1)[0]
        assert "| teacher | teach |" in section and f"| distilled student | {student} |" in section, section
        assert "| plain student | teach-plain-tiny_bert |" in section, section

    refit = hpo(["refit", student], tmp_path, sst2_dir)
    assert refit.returncode == 0 and "read from the cache" in refit.stdout, refit.stdout + refit.stderr
    refused = hpo(["refit", student, "--with-validation"], tmp_path, sst2_dir)
    assert refused.returncode != 0 and "without --with-validation" in refused.stderr, refused.stderr
