"""The assess, optimize, re-assess loop behind ``greenlm optimize``.

Load the model and the task data, measure the baseline, build each variant with its
technique, measure it the same way, then pick the lowest-energy variant within the quality
budget. Only one variant is alive at a time besides the baseline (which is also the
distillation teacher and the fidelity reference).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from greenlm.errors import ConfigError
from greenlm.optimize import assets, techniques
from greenlm.optimize.base import Transformed, one_off_energy_j, payback_inferences
from greenlm.optimize.errors import NotAModelError, NotApplicableError, UnknownTaskError, first_line
from greenlm.optimize.harness import (
    Measure,
    Measurement,
    measure_variant,
    pool,
    tracker_measure,
)
from greenlm.optimize.results import OptimizeReport, VariantResult
from greenlm.optimize.spec import DEFAULT_TECHNIQUES, TechniqueSpec, parse_techniques
from greenlm.optimize.tasks import TASKS, Task, build_task

logger = logging.getLogger(__name__)

#: ``progress(description, done, total)``; the CLI draws it with rich.
ProgressFn = Callable[[str, int, int], None]

BUILTIN_MODELS = {"minilm": "embedding", "smollm2": "causal-lm"}


@dataclass(frozen=True)
class OptimizeConfig:
    """Settings of one optimize run; the CLI and the Python API build the same object."""

    model: str = "minilm"
    task: str | None = None
    data: Path | None = None
    techniques: str = DEFAULT_TECHNIQUES
    max_quality_drop: float = 0.01
    repeats: int = 5
    samples: int | None = None
    batch_size: int = 1
    max_new_tokens: int = 16
    device: str = "cpu"
    location: str | None = None
    seed: int = 0
    threads: int | None = None
    report_dir: Path | None = None

    def validate(self) -> list[TechniqueSpec]:
        """Check every setting; returns the parsed techniques. Raises ConfigError."""
        if self.task is not None and self.task not in TASKS:
            raise UnknownTaskError(f"Unknown task {self.task!r}; choose one of {', '.join(TASKS)}.")
        if not (isinstance(self.repeats, int) and self.repeats >= 1):
            raise ConfigError(f"--repeats must be a whole number >= 1, got {self.repeats!r}.")
        if self.samples is not None and self.samples < 1:
            raise ConfigError(f"--samples must be >= 1, got {self.samples!r}.")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size!r}.")
        if self.max_new_tokens < 1:
            raise ConfigError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens!r}.")
        if not (math.isfinite(self.max_quality_drop) and self.max_quality_drop >= 0):
            raise ConfigError(
                f"--max-quality-drop must be a fraction >= 0 (0.01 = 1 %), got {self.max_quality_drop!r}."
            )
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {self.threads!r}.")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ConfigError(f"--device must be cpu, cuda or auto, got {self.device!r}.")
        return parse_techniques(self.techniques) if self.techniques.strip() else []


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but torch sees no CUDA GPU; use cpu.")
    return device


def infer_task(model_ref: str, config: Any | None) -> str:
    """Default task: from the built-in model name, or from the config's architecture."""
    if model_ref in BUILTIN_MODELS:
        return BUILTIN_MODELS[model_ref]
    archs = " ".join(getattr(config, "architectures", None) or [])
    if "ForCausalLM" in archs:
        return "causal-lm"
    if "ForSequenceClassification" in archs:
        return "classification"
    return "embedding"


def load_model(model_ref: str, task: str | None) -> tuple[Any, Any, str]:
    """``(tokenizer, model, task)`` for ``minilm``, ``smollm2`` or a local folder, offline."""
    if model_ref == "minilm":
        tok, model = assets.load_minilm()
        return tok, model, task or "embedding"
    if model_ref == "smollm2":
        tok, model = assets.load_smollm2()
        return tok, model, task or "causal-lm"
    path = Path(model_ref).expanduser()
    if not path.is_dir() or not (path / "config.json").is_file():
        raise NotAModelError(
            f"--model {model_ref!r} is not a model: give minilm, smollm2, or a local "
            "transformers folder containing config.json and weights (save_pretrained output)."
        )
    transformers = assets._require_transformers("Loading a local model")
    assets._offline()
    try:
        config = transformers.AutoConfig.from_pretrained(str(path))
        task = task or infer_task(model_ref, config)
        archs = " ".join(getattr(config, "architectures", None) or [])
        if task == "causal-lm":
            cls = transformers.AutoModelForCausalLM
        elif task == "classification" and "ForSequenceClassification" in archs:
            cls = transformers.AutoModelForSequenceClassification
        else:
            cls = transformers.AutoModel
        model = cls.from_pretrained(str(path))
        tok = transformers.AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError, KeyError) as e:
        raise NotAModelError(
            f"--model {model_ref!r}: transformers could not load it ({e}). Give a folder "
            "written by save_pretrained, with its tokenizer files."
        ) from e
    model.eval()
    return tok, model, task


def load_data(task: str, data: Path | None) -> tuple[list[str], list[int] | None]:
    """The task's texts (and labels): ``--data`` if given, else the shipped gensim corpora."""
    from greenlm.optimize.tasks import read_text_data

    if data is not None:
        return read_text_data(Path(data), task)
    if task == "causal-lm":
        return assets.lee_documents(), None
    pairs = assets.polarity_sentences()
    return [t for t, _ in pairs], [y for _, y in pairs]


def apply_spec(
    spec: TechniqueSpec, model: Any, task: Task, measure: Measure, seed: int, on_step: Callable[[], None] | None = None
) -> Transformed:
    """Apply each step of ``spec`` in order, through the technique registry; raises
    NotApplicableError to skip the variant.
    """
    ctx = techniques.Context(original=model, task=task, measure=measure, seed=seed, on_step=on_step)
    current = model
    descriptions: list[str] = []
    facts: dict[str, Any] = {}
    for step in spec.steps:
        t = techniques.get(step.name).apply(current, dict(step.args), ctx)
        current = t.model
        descriptions.append(t.description)
        facts.update(t.facts)
    return Transformed(current, "; then ".join(descriptions), facts)


def _result(
    name: str,
    technique: str,
    params: dict[str, float],
    description: str,
    m: Measurement,
    ev: Any,
    quality_drop: float | None,
    facts: dict[str, Any],
) -> VariantResult:
    return VariantResult(
        name=name,
        technique=technique,
        params=params,
        description=description,
        energy_j_per_1k=m.energy_j_per_1k,
        energy_j_per_token=m.energy_j_per_token,
        latency_p50_ms=m.latency_p50_ms,
        latency_p95_ms=m.latency_p95_ms,
        throughput_per_s=m.throughput_per_s,
        peak_memory_mb=m.peak_memory_mb,
        size_mb=m.size_mb,
        parameter_count=m.parameter_count,
        quality=ev.quality,
        fidelity=ev.fidelity,
        quality_drop=quality_drop,
        provenance=m.provenance,
        repeats=m.repeats,
        spread=m.spread,
        metrics=dict(ev.extra),
        facts=facts,
    )


def provenance_notes(
    provenance: str, detail: str, peak_memory_source: str, task: Task, samples: int, batch_size: int
) -> dict[str, str]:
    """One sentence per reported number saying how it was obtained."""
    if provenance == "modeled":
        energy = (
            "modeled: no energy counter (RAPL/NVML) was readable, so greenlm's tracker "
            "modeled power from this process's CPU utilisation x a TDP-per-thread model "
            "(and RAM from resident memory). Modeled energy is proportional to busy CPU "
            "time, so energy ratios between variants track their CPU-time ratios. "
            f"Meters: {detail}"
        )
    else:
        energy = f"{provenance}: read by greenlm's tracker from the meters: {detail}"
    unit = (
        f"one generation call of {getattr(task, 'max_new_tokens', 0)} new tokens"
        if task.generative
        else "one input text"
    )
    return {
        "energy_j_per_1k": f"{energy}. Median over repeated windows, each around one pass of "
        f"{samples} inferences (an inference is {unit}; batch size "
        f"{batch_size}); warm-up pass excluded.",
        "energy_j_per_token": "window energy / tokens generated, median over windows (generative tasks only)",
        "latency_p50_ms": "wall clock (time.perf_counter) of each inference call, pooled over all measured windows",
        "throughput_per_s": "inferences per second of summed call time, median over windows",
        "peak_memory_mb": peak_memory_source,
        "size_mb": "bytes of torch.save(state_dict) / 1e6 (dense storage: zeros count)",
        "parameter_count": "elements of floating and quantized tensors in the state dict",
        "quality": f"{task.name} quality on {len(task.eval_texts)} held-out items (see quality.metric)",
        "fidelity": "agreement with the baseline's outputs on the same held-out items",
        "co2e_g_saved_per_million": "energy saved per million inferences x PUE x grid "
        "intensity of the location (greenlm.carbon)",
    }


def optimize(
    config: OptimizeConfig,
    *,
    measure: Measure | None = None,
    progress: ProgressFn | None = None,
    loaded: tuple[Any, Any] | None = None,
) -> OptimizeReport:
    """Measure the baseline and every variant of ``config``; returns the report.

    ``loaded`` is an already loaded ``(tokenizer, model)`` (then ``config.model`` is only a
    label and ``config.task`` must be set); ``measure`` replaces the energy tracker.
    """
    import torch

    config.validate()
    threads_before = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return _optimize(config, measure, progress, loaded)
    finally:
        torch.set_num_threads(threads_before)


def _optimize(
    config: OptimizeConfig, measure: Measure | None, progress: ProgressFn | None, loaded: tuple[Any, Any] | None
) -> OptimizeReport:
    import torch

    from greenlm.carbon import CarbonConfig
    from greenlm.optimize.pareto import recommend

    specs = config.validate()
    carbon = CarbonConfig.build(location=config.location)
    device = resolve_device(config.device)
    if loaded is not None:
        if config.task is None:
            raise UnknownTaskError("give task= when passing an already loaded model")
        tokenizer, model = loaded
        task_name = config.task
    else:
        tokenizer, model, task_name = load_model(config.model, config.task)
    if task_name == "causal-lm" and not hasattr(model, "generate"):
        raise UnknownTaskError(
            f"--task causal-lm needs a model with a language-model head; {config.model!r} "
            f"is a {type(model).__name__}. Use --task embedding or classification."
        )
    model = model.to(device).eval()
    texts, labels = load_data(task_name, config.data)
    samples = config.samples or (8 if task_name == "causal-lm" else 64)
    task = build_task(
        task_name,
        tokenizer,
        texts,
        labels,
        samples=samples,
        batch_size=config.batch_size,
        seed=config.seed,
        device=device,
        max_new_tokens=config.max_new_tokens,
    )
    measure = measure or tracker_measure(
        config.location, metadata={"tool": "greenlm optimize", "model": config.model, "task": task_name}
    )
    total = (len(specs) + 1) * (config.repeats + 2) + (config.repeats if specs else 0)
    done = 0

    def tick(desc: str, n: int = 1) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(desc, min(done, total), total)

    batches = task.measure_batches()
    items = [task.items(b) for b in batches]
    tick("baseline: evaluating", 0)
    task.prepare(model)
    base_eval = task.evaluate(model)
    tick("baseline: measuring")
    base_m = measure_variant(
        model, task.run, batches, items, measure, repeats=config.repeats, on_repeat=lambda: tick("baseline")
    )
    tick("baseline")
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    results = [_result("baseline", "none", {}, f"unchanged model ({dtype}, {device})", base_m, base_eval, 0.0, {})]
    base_q = base_eval.quality.value
    for spec in specs:
        label = spec.name
        tick(f"{label}: building", 0)
        try:
            t = apply_spec(spec, model, task, measure, config.seed)
            variant_model = t.model.eval()
            tick(f"{label}: evaluating")
            ev = task.evaluate(variant_model)
            m = measure_variant(
                variant_model, task.run, batches, items, measure, repeats=config.repeats, on_repeat=_bind(tick, label)
            )
            tick(label)
        except NotApplicableError as e:
            results.append(VariantResult(spec.name, spec.technique, spec.params, skipped_reason=e.reason))
            tick(f"{label}: skipped", config.repeats + 1)
            continue
        except (RuntimeError, NotImplementedError, TypeError, ValueError, AttributeError) as e:
            # a kernel missing for a dtype on this device, an op the transform broke, ...
            logger.debug("variant %s failed", label, exc_info=True)
            results.append(
                VariantResult(
                    spec.name,
                    spec.technique,
                    spec.params,
                    skipped_reason=f"does not run on this model/device: {type(e).__name__}: {first_line(e)}",
                )
            )
            tick(f"{label}: skipped", config.repeats + 1)
            continue
        facts = dict(t.facts)
        one_off_j = one_off_energy_j(facts)
        if one_off_j is not None:
            facts["payback_inferences"] = payback_inferences(one_off_j, base_m.energy_j_per_1k, m.energy_j_per_1k)
        results.append(
            _result(
                spec.name,
                spec.technique,
                spec.params,
                t.description,
                m,
                ev,
                task.quality_drop(base_q, ev.quality.value),
                facts,
            )
        )
        del variant_model, t
    warnings = list(carbon.warnings())
    if specs and config.repeats >= 2:
        # measure the baseline again after the variants: pooled, so a change of machine load
        # during the run does not favour whatever was measured while it was quiet
        tick("baseline again", 0)
        base_after = measure_variant(model, task.run, batches, items, measure, repeats=config.repeats)
        drift = base_after.energy_j_per_1k / base_m.energy_j_per_1k - 1.0
        if abs(drift) > 0.10:
            warnings.append(
                f"The baseline measured {drift:+.0%} energy after the variants than before "
                "them: the machine's load changed during the run, so ratios carry that "
                "uncertainty (the baseline figure pools both)."
            )
        pooled = pool(base_m, base_after)
        results[0] = _result(
            "baseline",
            "none",
            {},
            results[0].description,
            pooled,
            base_eval,
            0.0,
            {"energy_drift_after_variants": drift},
        )
        for i, r in enumerate(results):
            one_off_j = one_off_energy_j(r.facts)
            if one_off_j is not None and r.energy_j_per_1k is not None:
                facts = dict(r.facts)
                facts["payback_inferences"] = payback_inferences(one_off_j, pooled.energy_j_per_1k, r.energy_j_per_1k)
                results[i] = dataclasses.replace(r, facts=facts)
        base_m = pooled
    per_token = task.generative
    rec = recommend(results, "baseline", config.max_quality_drop, per_token=per_token, carbon=carbon)
    if base_m.provenance == "modeled":
        warnings.append(
            "Energy is modeled from CPU utilisation (no hardware energy counter); savings track the CPU-time saved."
        )
    report = OptimizeReport(
        model=config.model,
        task=task_name,
        baseline="baseline",
        variants=tuple(results),
        recommendation=rec,
        max_quality_drop=config.max_quality_drop,
        device=device,
        settings={
            "repeats": config.repeats,
            "samples": samples,
            "batch_size": config.batch_size,
            "max_new_tokens": config.max_new_tokens if per_token else None,
            "techniques": [s.name for s in specs],
            "seed": config.seed,
            "location": carbon.location.code,
            "machine": machine_description(device),
            "torch_threads": torch.get_num_threads(),
            "eval_items": len(task.eval_texts),
            "train_items": len(task.train_texts),
        },
        provenance_notes=provenance_notes(
            base_m.provenance, base_m.provenance_detail, base_m.peak_memory_source, task, samples, config.batch_size
        ),
        warnings=tuple(warnings),
    )
    if config.report_dir is not None:
        from greenlm.optimize.report import write_report

        write_report(report, Path(config.report_dir))
    return report


def _bind(fn: Callable[[str], None], label: str) -> Callable[[], None]:
    return lambda: fn(label)


def machine_description(device: str) -> str:
    """CPU model, core count and torch version (and the GPU name on CUDA)."""
    import os

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    desc = f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__}"
    if device == "cuda":
        desc += f", {torch.cuda.get_device_name(0)}"
    return desc
