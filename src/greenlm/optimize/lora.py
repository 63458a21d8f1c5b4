"""Training-side techniques: full fine-tuning vs LoRA, mixed precision, gradient accumulation.

``greenlm optimize finetune`` trains the same pretrained model on the same task once per
mode and measures each epoch in its own tracker window (evaluation is outside the
windows), then reports energy per epoch (median and spread), time per epoch, trainable
parameters, peak memory and final quality.

Modes are written like techniques: ``full``, ``lora`` (``lora:r=16``), joined with ``+``
to ``amp`` (autocast: bf16 on CPU, bf16 or fp16 on GPU) and ``accum=N`` (the same
effective batch reached in N micro-batches): ``full,lora,lora+amp,full+accum=4``.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import statistics
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greenlm.errors import ConfigError
from greenlm.optimize.errors import NotAModelError, NotApplicableError, TechniqueArgumentError
from greenlm.optimize.harness import Measure, tracker_measure
from greenlm.optimize.tasks import Score, Task

logger = logging.getLogger(__name__)

DEFAULT_MODES = "full,lora,lora+amp"


@dataclass(frozen=True)
class FinetuneMode:
    """One way to train: LoRA or full, autocast or not, gradient accumulation steps."""

    name: str
    lora: bool
    amp: bool = False
    accum: int = 1
    rank: int = 8


def parse_modes(text: str) -> list[FinetuneMode]:
    """Parse ``--compare`` (``full,lora,lora+amp,full+accum=4,lora:r=16``)."""
    modes: list[FinetuneMode] = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        lora = None
        amp = False
        accum = 1
        rank = 8
        for part in (p.strip().lower() for p in item.split("+")):
            base, *opts = part.split(":")
            if base in ("full", "lora"):
                if lora is not None:
                    raise TechniqueArgumentError(f"finetune mode {item!r} names both full and lora; pick one")
                lora = base == "lora"
                for opt in opts:
                    key, _, value = opt.partition("=")
                    if base != "lora" or key not in ("r", "rank") or not value.isdigit() or int(value) < 1:
                        raise TechniqueArgumentError(
                            f"finetune mode {item!r}: only lora takes an option, a rank r=N with N >= 1 (lora:r=16)"
                        )
                    rank = int(value)
            elif base == "amp" and not opts:
                amp = True
            elif base.startswith("accum="):
                value = base.partition("=")[2]
                if not value.isdigit() or int(value) < 1:
                    raise TechniqueArgumentError(f"finetune mode {item!r}: accum=N needs a whole N >= 1")
                accum = int(value)
            else:
                raise TechniqueArgumentError(
                    f"Unknown finetune mode part {part!r} in {item!r}; use full or lora, "
                    "optionally with +amp and +accum=N (e.g. full,lora,lora+amp)"
                )
        if lora is None:
            raise TechniqueArgumentError(f"finetune mode {item!r} must start with full or lora")
        modes.append(FinetuneMode(item, lora, amp, accum, rank))
    if not modes:
        raise TechniqueArgumentError(f"No finetune mode in {text!r}; e.g. {DEFAULT_MODES!r}")
    return modes


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of ``greenlm optimize finetune``."""

    model: str = "minilm"
    task: str = "classification"
    data: Path | None = None
    compare: str = DEFAULT_MODES
    epochs: int = 3
    batch_size: int = 16
    lr_full: float = 5e-5
    lr_lora: float = 1e-3
    device: str = "cpu"
    location: str | None = None
    seed: int = 0
    report_dir: Path | None = None

    def validate(self) -> list[FinetuneMode]:
        if self.task not in ("classification", "causal-lm"):
            raise ConfigError(f"finetune supports --task classification or causal-lm, not {self.task!r}.")
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {self.epochs}.")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}.")
        if not (self.lr_full > 0 and self.lr_lora > 0):
            raise ConfigError("learning rates must be > 0.")
        modes = parse_modes(self.compare)
        for m in modes:
            if m.accum > self.batch_size:
                raise ConfigError(
                    f"{m.name}: accum={m.accum} exceeds --batch-size {self.batch_size}; the micro-batch would be empty."
                )
        return modes


@dataclass(frozen=True)
class FinetuneResult:
    """One training mode: energy and time per epoch, size of the update, final quality."""

    name: str
    lora: bool
    amp: bool
    accum: int
    trainable_params: int | None = None
    total_params: int | None = None
    energy_j_per_epoch: float | None = None
    energy_j_per_epoch_min: float | None = None
    energy_j_per_epoch_max: float | None = None
    energy_j_total: float | None = None
    duration_s_per_epoch: float | None = None
    peak_memory_mb: float | None = None
    quality: Score | None = None
    quality_by_epoch: tuple[float | None, ...] = ()
    loss_by_epoch: tuple[float, ...] = ()
    provenance: str | None = None
    skipped_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["quality"] = dataclasses.asdict(self.quality) if self.quality else None
        return d


@dataclass(frozen=True)
class FinetuneReport:
    model: str
    task: str
    modes: tuple[FinetuneResult, ...]
    settings: dict[str, Any]
    provenance_notes: dict[str, str]
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def mode(self, name: str) -> FinetuneResult:
        for m in self.modes:
            if m.name == name:
                return m
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "task": self.task,
            "modes": [m.to_dict() for m in self.modes],
            "settings": self.settings,
            "provenance_notes": self.provenance_notes,
            "warnings": list(self.warnings),
        }


def lora_targets(model: Any) -> list[str] | str:
    """Attention projections LoRA adapts: query/value (BERT) or q_proj/v_proj (Llama)."""
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    for pair in (["query", "value"], ["q_proj", "v_proj"], ["c_attn"]):
        if all(p in names for p in pair):
            return pair
    return "all-linear"


def wrap_lora(model: Any, task: str, rank: int) -> Any:
    try:
        import peft
    except ImportError as e:
        from greenlm.errors import MissingExtraError

        raise MissingExtraError("LoRA fine-tuning", "optimize", "peft") from e
    cfg = peft.LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=0.0,
        target_modules=lora_targets(model),
        task_type=peft.TaskType.SEQ_CLS if task == "classification" else peft.TaskType.CAUSAL_LM,
    )
    return peft.get_peft_model(model, cfg)


def _autocast(device: str, enabled: bool) -> Any:
    import contextlib

    import torch

    if not enabled:
        return contextlib.nullcontext()
    if device == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", dtype=torch.bfloat16)


def _loss(model: Any, task: Task, batch: dict[str, Any], labels: Any) -> Any:
    if task.name == "classification":
        return model(**batch, labels=labels).loss
    lm_labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    return model(**batch, labels=lm_labels).loss


def train_mode(
    base_model: Any,
    task: Task,
    mode: FinetuneMode,
    config: FinetuneConfig,
    measure: Measure,
    on_epoch: Callable[[], None] | None = None,
) -> FinetuneResult:
    """Train a fresh copy of ``base_model`` in ``mode``; one measure window per epoch."""
    import psutil
    import torch

    torch.manual_seed(config.seed)
    model = copy.deepcopy(base_model)
    if mode.lora:
        model = wrap_lora(model, task.name, mode.rank)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    n_total = sum(p.numel() for p in model.parameters())
    lr = config.lr_lora if mode.lora else config.lr_full
    opt = torch.optim.AdamW(trainable, lr=lr)
    scaler = None
    if mode.amp and task.device == "cuda" and not torch.cuda.is_bf16_supported():
        scaler = torch.amp.GradScaler("cuda")
    batches = task.train_batches(config.batch_size)
    micro = max(1, config.batch_size // mode.accum)
    energies: list[float] = []
    durations: list[float] = []
    qualities: list[float | None] = []
    losses: list[float] = []
    provenances: list[str] = []
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    peak = [rss0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.01):
            peak[0] = max(peak[0], proc.memory_info().rss)

    def epoch() -> None:
        total = 0.0
        count = 0
        for batch, labels in batches:
            opt.zero_grad(set_to_none=True)
            n = batch["input_ids"].shape[0]
            for s in range(0, n, micro):
                part = {k: v[s : s + micro] for k, v in batch.items()}
                lab = labels[s : s + micro] if labels is not None else None
                with _autocast(task.device, mode.amp):
                    loss = _loss(model, task, part, lab) * (part["input_ids"].shape[0] / n)
                if scaler is not None:
                    scaler.scale(loss).backward()
                else:
                    loss.backward()
                total += float(loss.detach())
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            count += 1
        losses.append(total / max(count, 1))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        for _ in range(config.epochs):
            model.train()
            w = measure(epoch)
            energies.append(w.energy_j)
            durations.append(w.duration_s)
            provenances.append(w.provenance)
            model.eval()
            qualities.append(task.evaluate(model).quality.value)
            if on_epoch is not None:
                on_epoch()
    finally:
        stop.set()
        sampler.join()
    quality = task.evaluate(model).quality
    return FinetuneResult(
        name=mode.name,
        lora=mode.lora,
        amp=mode.amp,
        accum=mode.accum,
        trainable_params=n_trainable,
        total_params=n_total,
        energy_j_per_epoch=statistics.median(energies),
        energy_j_per_epoch_min=min(energies),
        energy_j_per_epoch_max=max(energies),
        energy_j_total=sum(energies),
        duration_s_per_epoch=statistics.median(durations),
        peak_memory_mb=(peak[0] - rss0) / 1e6 + _param_mb(model),
        quality=quality,
        quality_by_epoch=tuple(qualities),
        loss_by_epoch=tuple(losses),
        provenance=max(provenances, key=lambda p: {"counter": 0, "sampled": 1}.get(p, 2)),
    )


def _param_mb(model: Any) -> float:
    return sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6


def load_for_finetune(model_ref: str, task: str, n_labels: int) -> tuple[Any, Any]:
    """(tokenizer, model with a task head) for minilm, smollm2 or a local folder."""
    from greenlm.optimize import assets

    transformers = assets._require_transformers("Fine-tuning")
    assets._offline()
    if model_ref == "smollm2":
        tok, model = assets.load_smollm2()
        if task == "causal-lm":
            return tok, model
        path = assets.smollm2_cache_dir()
    elif model_ref == "minilm":
        path = assets.minilm_path()
    else:
        path = Path(model_ref).expanduser()
        if not (path / "config.json").is_file():
            raise NotAModelError(
                f"--model {model_ref!r} is not a model: give minilm, smollm2, or a local "
                "transformers folder containing config.json."
            )
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(path))
        if task == "classification":
            model = transformers.AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=n_labels)
            if getattr(model.config, "pad_token_id", None) is None:
                if tok.pad_token is None:
                    tok.pad_token = tok.eos_token
                model.config.pad_token_id = tok.pad_token_id
        else:
            model = transformers.AutoModelForCausalLM.from_pretrained(str(path))
    except (OSError, ValueError, KeyError) as e:
        raise NotAModelError(f"--model {model_ref!r}: transformers could not load it ({e}).") from e
    return tok, model


def finetune(
    config: FinetuneConfig,
    *,
    measure: Measure | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    loaded: tuple[Any, Any] | None = None,
) -> FinetuneReport:
    """Train once per mode on the same data and compare energy per epoch and quality.

    ``loaded`` = ``(tokenizer, model with task head)`` skips loading (each mode trains a
    deep copy of it).
    """
    import torch

    from greenlm.optimize.runner import load_data, machine_description, resolve_device
    from greenlm.optimize.tasks import build_task

    modes = config.validate()
    device = resolve_device(config.device)
    texts, labels = load_data(config.task, config.data)
    n_labels = (max(labels) + 1) if labels else 2
    if loaded is not None:
        tokenizer, base = loaded
    else:
        tokenizer, base = load_for_finetune(config.model, config.task, n_labels)
    if (
        config.task == "classification"
        and getattr(base, "classifier", None) is None
        and getattr(base, "score", None) is None
    ):
        raise NotAModelError(
            f"--model {config.model!r} has no classification head; finetune --task "
            "classification needs a model loaded with AutoModelForSequenceClassification."
        )
    torch.manual_seed(config.seed)
    base = base.to(device).eval()
    task = build_task(
        config.task, tokenizer, texts, labels, samples=1, batch_size=config.batch_size, seed=config.seed, device=device
    )
    task.prepare(base)
    measure = measure or tracker_measure(
        config.location, metadata={"tool": "greenlm optimize finetune", "model": config.model, "task": config.task}
    )
    total = len(modes) * config.epochs
    done = 0
    results: list[FinetuneResult] = []
    for mode in modes:

        def tick(name: str = mode.name) -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(f"finetune {name}", done, total)

        try:
            results.append(train_mode(base, task, mode, config, measure, tick))
        except NotApplicableError as e:
            results.append(FinetuneResult(mode.name, mode.lora, mode.amp, mode.accum, skipped_reason=e.reason))
        except (RuntimeError, ValueError, TypeError) as e:
            logger.debug("finetune mode %s failed", mode.name, exc_info=True)
            results.append(
                FinetuneResult(
                    mode.name,
                    mode.lora,
                    mode.amp,
                    mode.accum,
                    skipped_reason=f"does not run here: {type(e).__name__}: {str(e)[:300]}",
                )
            )
    provenance = next((r.provenance for r in results if r.provenance), "modeled")
    warnings = []
    if provenance == "modeled":
        warnings.append(
            "Energy is modeled from CPU utilisation (no hardware energy counter); "
            "energy per epoch tracks busy CPU time."
        )
    metric = "accuracy" if config.task == "classification" else "perplexity"
    report = FinetuneReport(
        model=config.model,
        task=config.task,
        modes=tuple(results),
        settings={
            "epochs": config.epochs,
            "batch_size": config.batch_size,
            "lr_full": config.lr_full,
            "lr_lora": config.lr_lora,
            "seed": config.seed,
            "train_items": len(task.train_texts),
            "eval_items": len(task.eval_texts),
            "device": device,
            "machine": machine_description(device),
        },
        provenance_notes={
            "energy_j_per_epoch": f"{provenance}: median over epochs of greenlm tracker "
            "windows around each training epoch (evaluation excluded)",
            "quality": f"{metric} on the held-out split after the last epoch",
            "peak_memory_mb": "parameters in memory + growth of the process RSS during training (psutil, every 10 ms)",
            "trainable_params": "parameters with requires_grad (LoRA: adapters + task head)",
        },
        warnings=tuple(warnings),
    )
    if config.report_dir is not None:
        import json

        d = Path(config.report_dir)
        d.mkdir(parents=True, exist_ok=True)
        (d / "finetune.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return report
