"""Knowledge distillation's loss: a student learns from the task's targets and from a teacher's outputs.

Classification (Hinton et al. 2015)::

    alpha * CE(student, y) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))   # a labelled row
    T^2 * KL(softmax(teacher / T) || softmax(student / T))                                         # an unlabeled row

``T^2`` keeps the soft term's gradients on the hard term's scale as ``T`` grows. Regression: ``alpha`` times the
head's own loss against the targets plus ``1 - alpha`` times the MSE against the teacher's predictions.

``alpha`` splits a labelled row's weight between its two targets. A row without a label (an unlabeled row the
teacher labelled: class -1, or a NaN target) has one target, the teacher's, and gives it its whole weight: weighed
by ``1 - alpha`` instead, a transfer-set row would count 0.3 of a labelled one at the alpha of 0.7 the searches
chose, and the rows distillation gains most from would teach least. Both terms are sums over rows divided by the
batch's rows, so micro-batches add up to the batch (as :func:`trainers.loop.fine_tune` needs).

Example::

    >>> import torch
    >>> from trainers.heads import ClassificationHead
    >>> same = torch.tensor([[2.0, 0.0]])
    >>> loss = Distillation(temperature=2.0, alpha=0.0).loss(ClassificationHead(), same, torch.tensor([1]), same)
    >>> round(float(loss), 6)  # a student that matches its teacher: no soft loss, and alpha=0 ignores the label
    0.0
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trainers.heads import Head

UNLABELED = -1  # the class id of a row only the teacher labels (regression: a NaN target)


@dataclass(frozen=True)
class Distillation:
    """The blend of the task's loss and the teacher's: ``alpha`` weighs the task, ``temperature`` softens both
    distributions (classification only)."""

    temperature: float = 2.0
    alpha: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"distillation alpha must lie in [0, 1], got {self.alpha}")
        if self.temperature <= 0:
            raise ValueError(f"distillation temperature must be positive, got {self.temperature}")

    def loss(self, head: Head, outputs: torch.Tensor, targets: torch.Tensor, teacher: torch.Tensor,
             weights: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
        """The blended loss of a batch: ``teacher`` holds the teacher's outputs for the same rows."""
        outputs, teacher = outputs.float(), teacher.float().to(outputs.device)
        labeled = ~targets.isnan() if targets.is_floating_point() else targets != UNLABELED
        hard = torch.zeros((), device=outputs.device)
        if self.alpha and bool(labeled.any()):
            hard = head.loss(outputs[labeled], targets[labeled], weights, reduction="sum")
        share = torch.where(labeled, 1 - self.alpha, 1.0).to(outputs.device)  # an unlabeled row: the teacher's alone
        soft = (share * self._soft(head.kind, outputs, teacher)).sum()
        total = self.alpha * hard + soft
        return total / len(targets) if reduction == "mean" else total

    def _soft(self, kind: str, outputs: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Per row: the teacher's term."""
        if kind == "regression":
            return (outputs.reshape(-1) - teacher.reshape(-1)).pow(2)
        t = self.temperature
        student_log = F.log_softmax(outputs / t, dim=-1)
        teacher_log = F.log_softmax(teacher / t, dim=-1)
        return t * t * F.kl_div(student_log, teacher_log, log_target=True, reduction="none").sum(-1)
