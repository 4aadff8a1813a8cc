"""Distillation's loss equals its formula, worked by hand on known logits and predictions."""

from __future__ import annotations

import math

import pytest
import torch

from trainers.distill import UNLABELED, Distillation
from trainers.heads import ClassificationHead, RegressionHead


def softmax(row, t):
    exps = [math.exp(x / t) for x in row]
    return [e / sum(exps) for e in exps]


def by_hand(student, teacher, labels, t, alpha):
    """alpha * CE + (1 - alpha) * T^2 * KL(teacher_T || student_T), per row, averaged over all rows; an unlabeled
    row adds the teacher's term only, at full weight."""
    total = 0.0
    for s, te, y in zip(student, teacher, labels, strict=True):
        p_s, p_t = softmax(s, t), softmax(te, t)
        kl = sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s, strict=True))
        hard = -math.log(softmax(s, 1.0)[y]) if y != UNLABELED else 0.0
        total += alpha * hard + (1 - alpha if y != UNLABELED else 1.0) * t * t * kl
    return total / len(student)


@pytest.mark.parametrize(("t", "alpha"), [(1.0, 0.5), (2.0, 0.3), (4.0, 0.0), (3.0, 1.0)])
def test_the_classification_loss_is_its_formula(t, alpha):
    student = [[1.0, -0.5, 0.3], [0.2, 0.1, 2.0], [-1.0, 0.5, 0.0]]
    teacher = [[2.0, -1.0, 0.0], [0.0, 0.5, 1.5], [0.3, 0.3, -0.4]]
    labels = [0, 2, UNLABELED]
    loss = Distillation(t, alpha).loss(ClassificationHead(), torch.tensor(student), torch.tensor(labels),
                                       torch.tensor(teacher))
    assert float(loss) == pytest.approx(by_hand(student, teacher, labels, t, alpha), rel=1e-5)


def test_the_regression_loss_blends_the_targets_and_the_teachers_predictions():
    student, targets, teacher = [1.0, 2.0, 0.5], [1.5, float("nan"), 0.0], [1.0, 3.0, 1.0]
    loss = Distillation(temperature=5.0, alpha=0.25).loss(RegressionHead("mse"), torch.tensor(student)[:, None],
                                                          torch.tensor(targets), torch.tensor(teacher)[:, None])
    hard = (1.0 - 1.5) ** 2 + (0.5 - 0.0) ** 2  # the unlabeled (NaN) row adds no task term
    soft = 0.75 * 0.0 + 1.0 * 1.0 + 0.75 * 0.25  # and the teacher's at full weight
    assert float(loss) == pytest.approx((0.25 * hard + soft) / 3)


def test_micro_batches_add_up_to_the_batch():
    torch.manual_seed(0)
    student, teacher, labels = torch.randn(6, 4), torch.randn(6, 4), torch.tensor([0, 1, 2, 3, UNLABELED, 1])
    distill, head = Distillation(2.0, 0.4), ClassificationHead()
    whole = distill.loss(head, student, labels, teacher)
    parts = sum(distill.loss(head, student[i:i + 2], labels[i:i + 2], teacher[i:i + 2], reduction="sum")
                for i in range(0, 6, 2)) / 6
    assert float(parts) == pytest.approx(float(whole), rel=1e-6)


@pytest.mark.parametrize(("t", "alpha"), [(0.0, 0.5), (2.0, 1.5)])
def test_settings_out_of_range_are_refused(t, alpha):
    with pytest.raises(ValueError, match="temperature|alpha"):
        Distillation(t, alpha)


def test_a_student_learns_what_its_teacher_says_over_the_labels(small_sst2, tiny_bert, tmp_path):
    """A teacher that gives every row the class the tiny model alone predicts least: with alpha=1 training is
    exactly as without it; with alpha=0 the student learns to say what the teacher says, whatever the labels."""
    from trainers import ConsoleReporter, TrainConfig, fine_tune, load_model, prepare_data
    from trainers.loop import predict

    data = prepare_data(small_sst2["train"], small_sst2["dev"], tiny_bert, train_limit=128)
    base = dict(model_name_or_path=str(tiny_bert), max_epochs=2, learning_rate=2e-3, batch_size=32, num_threads=1)

    def train(name, rows, **extra):
        reporter = ConsoleReporter(keep_dir=tmp_path / name)
        fine_tune(TrainConfig(**base, **extra), rows, reporter)
        outputs, _ = predict(load_model(tmp_path / name), data.validation, data.pad_token_id, 64, torch.device("cpu"))
        return reporter.history, outputs.argmax(-1)

    plain, plain_says = train("plain", data)
    rare = int(plain_says.bincount(minlength=2).argmin())
    taught = data.with_teacher(torch.tensor([[4.0, -4.0] if rare == 0 else [-4.0, 4.0]] * len(data.train)))
    labels_only, _ = train("labels_only", taught, distill_alpha=1.0)
    _, student_says = train("teacher_only", taught, distill_alpha=0.0, distill_temperature=1.0)

    same = ("train_loss", "val_loss", "val_accuracy")
    assert [[m[k] for k in same] for m in plain] == [[m[k] for k in same] for m in labels_only]
    assert float((student_says == rare).float().mean()) > 0.95 > 0.5 >= float((plain_says == rare).float().mean())


def test_an_image_student_learns_its_teacher_through_the_task_with_mixup(tmp_path):
    """The image task's distillation path (mixup mixes the teacher's terms as it mixes the labels): a teacher that
    calls every image "Coat" is learnt over the labels; the task hands out a saved model's training outputs."""
    from hpo.config.resolvers import PROJECT_ROOT
    from trainers import ConsoleReporter, TrainConfig
    from trainers.tasks import DataSource, load_task

    fashion = PROJECT_ROOT / "data" / "fashion_mnist"
    task = load_task("image_classification")
    source = DataSource(train_path=fashion / "train", validation_path=fashion / "validation",
                        settings={"image_size": 32}, train_limit=80, validation_limit=20, stratify=True)
    data = task.prepare(source, "mobilenet_v2", max_length=0, cache_dir=None)
    coat = data.label_names.index("Coat")
    says_coat = torch.full((len(data.train), data.num_labels), -3.0)
    says_coat[:, coat] = 3.0
    cfg = TrainConfig(model_name_or_path="mobilenet_v2", max_epochs=1, learning_rate=1e-2, batch_size=16,
                      freeze_depth=8, mixup_alpha=0.2, num_threads=1, distill_alpha=0.0, distill_temperature=1.0)
    task.fine_tune(cfg, task.with_teacher(data, says_coat), ConsoleReporter(keep_dir=tmp_path / "student"))
    outputs = task.training_outputs(tmp_path / "student", data, batch_size=64)
    assert outputs.shape == (len(data.train), data.num_labels)
    assert float((outputs.argmax(-1) == coat).float().mean()) > 0.9


def test_unlabeled_rows_join_training_and_are_learned_from_the_teacher_only(small_sst2, tiny_bert, tmp_path):
    """``data.unlabeled_path``: its texts follow the labelled rows as UNLABELED, count as no class, change the
    cache key; a student trains on them from the teacher's outputs (rows only the teacher labels)."""
    from trainers import ConsoleReporter, TrainConfig, fine_tune, prepare_data
    from trainers.heads import class_weights

    unlabeled = tmp_path / "unlabeled.csv"
    unlabeled.write_text("text,note\na quietly moving film,x\nan empty exercise,y\n\"long, dull, flat\",z\n")
    plain = prepare_data(small_sst2["train"], small_sst2["dev"], tiny_bert, train_limit=64, cache_dir=tmp_path)
    data = prepare_data(small_sst2["train"], small_sst2["dev"], tiny_bert, train_limit=64, cache_dir=tmp_path,
                        unlabeled_path=unlabeled)
    assert len(data.train) == 67 and data.train.labels[:64] == plain.train.labels
    assert data.train.labels[64:] == [UNLABELED] * 3 and data.profile(data.train)["unlabeled_rows"] == 3
    assert data.profile(data.train)["label_counts"] == plain.profile(plain.train)["label_counts"]
    assert class_weights("balanced", data.train.labels, 2).tolist() == \
        class_weights("balanced", plain.train.labels, 2).tolist()

    taught = data.with_teacher(torch.tensor([[2.0, -2.0]] * len(data.train)))
    reporter = ConsoleReporter()
    fine_tune(TrainConfig(model_name_or_path=str(tiny_bert), max_epochs=1, batch_size=16, num_threads=1,
                          class_weights="balanced"), taught, reporter)
    assert math.isfinite(reporter.history[-1]["train_loss"])
