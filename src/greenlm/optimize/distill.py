"""Knowledge distillation into a shallower student, with the training energy counted.

The student is the teacher with fewer layers: it keeps the embeddings, the output head and
``layers`` of the teacher's transformer layers, evenly spaced (6 -> 3 keeps layers 0, 2, 5
... chosen by rounding a linspace), which is a far better start than random weights. It is
then trained on the task's training split against the teacher's soft targets: KL divergence
of temperature-softened class or next-token distributions (classification, causal LM), or
one minus the cosine similarity of sentence embeddings (embedding task).

The energy of that training run is measured with the same measure function as inference,
and the report says after how many inferences the student has paid it back.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from greenlm.optimize import _arch
from greenlm.optimize.base import Transformed
from greenlm.optimize.errors import NotApplicableError


def make_student(teacher: Any, layers: int) -> tuple[Any, list[int]]:
    """A copy of ``teacher`` keeping ``layers`` evenly spaced transformer layers."""
    try:
        _, _, stack = _arch.layer_stack(teacher)
    except LookupError as e:
        raise NotApplicableError(
            "distillation needs a stack of transformer layers (config.num_hidden_layers) and none was found"
        ) from e
    n = len(stack)
    if layers >= n:
        raise NotApplicableError(
            f"the student must be shallower than the teacher: asked for {layers} layers, the "
            f"teacher has {n}; use distill:layers=N with N < {n}"
        )
    keep = sorted({round(i * (n - 1) / max(layers - 1, 1)) for i in range(layers)})
    student = copy.deepcopy(teacher)
    parent, attr, s_stack = _arch.layer_stack(student)
    import torch

    new_stack = torch.nn.ModuleList([s_stack[i] for i in keep])
    for new_idx, layer in enumerate(new_stack):
        for m in layer.modules():
            if hasattr(m, "layer_idx"):
                setattr(m, "layer_idx", new_idx)  # noqa: B010 - KV-cache slot of the layer
    setattr(parent, attr, new_stack)
    cfg = student.config
    cfg.num_hidden_layers = len(keep)
    layer_types = getattr(cfg, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) == n:
        cfg.layer_types = [layer_types[i] for i in keep]
    return student, keep


@dataclass
class DistillSettings:
    layers: int = 3
    epochs: int = 2
    temperature: float = 2.0
    lr: float = 1e-4
    batch: int = 16
    seed: int = 0

    @classmethod
    def from_args(cls, args: dict[str, float], seed: int = 0) -> DistillSettings:
        d = cls(seed=seed)
        return cls(
            layers=int(args.get("layers", d.layers)),
            epochs=int(args.get("epochs", d.epochs)),
            temperature=float(args.get("temperature", d.temperature)),
            lr=float(args.get("lr", d.lr)),
            batch=int(args.get("batch", d.batch)),
            seed=seed,
        )


def distill(
    teacher: Any, task: Any, settings: DistillSettings, measure: Any, on_step: Callable[[], None] | None = None
) -> Transformed:
    """Build a student and train it against ``teacher`` on ``task``'s training split.

    ``measure`` wraps the training loop (a :data:`~greenlm.optimize.harness.Measure`); its
    energy is returned in ``facts["distill_energy_j"]``.
    """
    import torch

    if any(getattr(p, "is_quantized", False) for p in teacher.state_dict().values() if isinstance(p, torch.Tensor)):
        raise NotApplicableError("distillation needs a floating-point teacher")
    student, keep = make_student(teacher, settings.layers)
    batches = task.train_batches(settings.batch)
    if not batches:
        raise NotApplicableError("the task has no training data to distill on")
    torch.manual_seed(settings.seed)
    student.float().train()
    teacher_mode = teacher.training
    teacher.eval()
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=settings.lr)
    losses: list[float] = []

    def train() -> None:
        for _ in range(settings.epochs):
            for batch, labels in batches:
                loss = task.distill_loss(student, teacher, batch, labels, settings.temperature)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                if on_step is not None:
                    on_step()

    try:
        window = measure(train)
    finally:
        teacher.train(teacher_mode)
    student.eval()
    for p in student.parameters():
        p.requires_grad_(False)
    steps = settings.epochs * len(batches)
    return Transformed(
        student,
        f"distilled student keeping teacher layers {keep} ({len(keep)} of "
        f"{teacher.config.num_hidden_layers}), trained {settings.epochs} epoch(s) "
        f"({steps} steps, T={settings.temperature:g}) on {len(task.train_texts)} examples",
        {
            "student_layers": keep,
            "distill_energy_j": window.energy_j,
            "distill_duration_s": window.duration_s,
            "distill_provenance": window.provenance,
            "distill_steps": steps,
            "distill_loss_first": losses[0] if losses else None,
            "distill_loss_last": losses[-1] if losses else None,
        },
    )


def payback_inferences(distill_energy_j: float, baseline_j_per_1k: float, student_j_per_1k: float) -> float | None:
    """Inferences after which the student's savings equal its training energy (None: never)."""
    saving_per_inference_j = (baseline_j_per_1k - student_j_per_1k) / 1000.0
    if saving_per_inference_j <= 0:
        return None
    return distill_energy_j / saving_per_inference_j
