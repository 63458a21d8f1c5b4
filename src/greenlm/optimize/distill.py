"""Knowledge distillation into a shallower student, with the training energy counted.

The student is the teacher with fewer layers: it keeps the embeddings, the output head and
``layers`` of the teacher's transformer layers, evenly spaced (6 -> 3 keeps layers 0, 2, 5
... chosen by rounding a linspace), which is a far better start than random weights. It is
then trained on the task's training split against the teacher's soft targets: KL divergence
of temperature-softened class or next-token distributions (classification, causal LM), or
one minus the cosine similarity of sentence embeddings (embedding task).

The energy of that training run is measured with the same measure function as inference,
and the report says after how many inferences the student has paid it back.

:func:`recover` runs the same training on a model that a structural step (``heads``,
``ffn``, ``lowrank``) has already shrunk, against the unmodified model as teacher: recovery
fine-tuning, the usual second half of structured pruning. Its energy is counted the same
way (``recover_energy_j``) and paid back the same way.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from greenlm.optimize import _arch
from greenlm.optimize.base import Transformed, clone
from greenlm.optimize.errors import NotApplicableError
from greenlm.optimize.techniques import STRUCTURAL, UNTRAINABLE, Context, Order, check_range, check_whole, technique

#: Where the layer types live whose weights are integers, not trainable floats.
_QUANTIZED_MODULE_PATHS = (
    "torch.ao.nn.quantized",
    "torch.nn.quantized",
    "bitsandbytes",
    "greenlm.optimize.weight_only",
)


def quantized_modules(model: Any) -> list[str]:
    """Names of the layer types in ``model`` that hold quantized (untrainable) weights."""
    found = {type(m).__name__ for m in model.modules() if type(m).__module__.startswith(_QUANTIZED_MODULE_PATHS)}
    return sorted(found)


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
    frozen = quantized_modules(teacher)
    if frozen:
        raise NotApplicableError(
            f"distillation needs a floating-point teacher; this one has {', '.join(frozen)} layers"
        )
    student, keep = make_student(teacher, settings.layers)
    window, losses, steps = _train_against(student, teacher, task, settings, measure, on_step, "distill")
    return Transformed(
        student,
        f"distilled student keeping teacher layers {keep} ({len(keep)} of "
        f"{teacher.config.num_hidden_layers}), trained {settings.epochs} epoch(s) "
        f"({steps} steps, T={settings.temperature:g}) on {len(task.train_texts)} examples",
        {"student_layers": keep, **_training_facts("distill", window, steps, losses)},
    )


def _train_against(
    student: Any,
    teacher: Any,
    task: Any,
    settings: DistillSettings,
    measure: Any,
    on_step: Callable[[], None] | None,
    what: str,
) -> tuple[Any, list[float], int]:
    """Train ``student`` (in place) on the task's soft targets from ``teacher``, inside one
    ``measure`` window. Returns the window, the loss of every step and the step count.
    """
    import torch

    batches = task.train_batches(settings.batch)
    if not batches:
        raise NotApplicableError(f"the task has no training data to {what} on")
    torch.manual_seed(settings.seed)
    student.float().train()
    for p in student.parameters():
        if p.is_floating_point():
            p.requires_grad_(True)
    teacher_mode = teacher.training
    teacher.eval()
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=settings.lr)
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
    return window, losses, settings.epochs * len(batches)


def recover(
    model: Any,
    teacher: Any,
    task: Any,
    settings: DistillSettings,
    measure: Any,
    on_step: Callable[[], None] | None = None,
) -> Transformed:
    """Recovery fine-tuning: train a copy of the shrunk ``model`` against the unmodified
    ``teacher`` on ``task``'s training split (the distillation loss, all layers kept).

    ``measure`` wraps the training loop; its energy is returned in
    ``facts["recover_energy_j"]``.
    """
    frozen = quantized_modules(model)
    if frozen:
        raise NotApplicableError(
            f"recovery fine-tuning needs floating-point weights, and this model has quantized layers "
            f"({', '.join(frozen)}); apply it before quantization"
        )
    student = clone(model)
    window, losses, steps = _train_against(student, teacher, task, settings, measure, on_step, "recover")
    return Transformed(
        student,
        f"recovery fine-tuning against the unmodified model: {settings.epochs} epoch(s) "
        f"({steps} steps, T={settings.temperature:g}, lr={settings.lr:g}) on {len(task.train_texts)} examples",
        _training_facts("recover", window, steps, losses),
    )


def _training_facts(prefix: str, window: Any, steps: int, losses: list[float]) -> dict[str, Any]:
    """What a training run cost and did, as ``<prefix>_energy_j``, ``_duration_s``, ..."""
    return {
        f"{prefix}_energy_j": window.energy_j,
        f"{prefix}_duration_s": window.duration_s,
        f"{prefix}_provenance": window.provenance,
        f"{prefix}_steps": steps,
        f"{prefix}_loss_first": losses[0] if losses else None,
        f"{prefix}_loss_last": losses[-1] if losses else None,
    }


def _check_training(name: str, args: dict[str, float]) -> dict[str, float]:
    check_whole(name, args, "epochs", 1, "a whole number of epochs >= 1")
    check_range(name, args, "temperature", args.get("temperature", 1.0) > 0, "a temperature > 0")
    check_range(name, args, "lr", args.get("lr", 1e-4) > 0, "a learning rate > 0")
    check_whole(name, args, "batch", 1, "a whole batch size >= 1")
    return args


def _parse_distill(args: dict[str, float]) -> dict[str, float]:
    args.setdefault("layers", 3)
    check_whole("distill", args, "layers", 1, "a whole number of student layers >= 1, e.g. distill:layers=3")
    return _check_training("distill", args)


def _parse_recover(args: dict[str, float]) -> dict[str, float]:
    args.setdefault("epochs", 3)
    return _check_training("recover", args)


_TRAINING_KEYS = ("epochs", "temperature", "lr", "batch")


@technique(
    "distill",
    summary="a shallower student trained against the model's soft targets",
    main="layers",
    keys=_TRAINING_KEYS,
    parse=_parse_distill,
    tags={UNTRAINABLE: "distill already trains its student"},
    one_off_energy={"distill_energy_j": "distillation"},
)
def _distill(model: Any, args: dict[str, float], ctx: Context) -> Transformed:
    return distill(model, ctx.task, DistillSettings.from_args(args, ctx.seed), ctx.measure, ctx.on_step)


@technique(
    "recover",
    summary="recovery fine-tuning of a structurally shrunk model against the original",
    main="epochs",
    keys=_TRAINING_KEYS,
    parse=_parse_recover,
    order=Order(
        after=STRUCTURAL,
        after_why="fine-tunes a model that a structural step shrank",
        after_example="heads:0.25+recover or ffn:0.25+recover:epochs=3",
        not_after=frozenset({UNTRAINABLE}),
        fix="put recover right after a structural step and quantize afterwards",
        example="heads:0.25+recover+bf16",
    ),
    one_off_energy={"recover_energy_j": "recovery"},
)
def _recover(model: Any, args: dict[str, float], ctx: Context) -> Transformed:
    # the unmodified model is the teacher
    return recover(model, ctx.original, ctx.task, DistillSettings.from_args(args, ctx.seed), ctx.measure, ctx.on_step)
