"""The assess, optimize, re-assess loop behind ``greenlm optimize``.

Load the model and the task data; evaluate and warm up the baseline; build, evaluate and
warm up each variant with its technique (all variants stay in memory); then measure in
rounds, one window of every model per round in a shuffled order, so that a change of the
machine's load during the run hits every variant alike (plus extra rounds, with the
baseline, for variants whose saving is not yet decided). Each variant's energy is compared
with the baseline's round by round (:mod:`greenlm.optimize.stats`), and a variant is
recommended only when its saving is significant and its quality within the budget
(:mod:`greenlm.optimize.pareto`).
"""

from __future__ import annotations

import logging
import math
import platform
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greenlm import humanize
from greenlm.errors import ConfigError
from greenlm.optimize import assets, techniques
from greenlm.optimize.base import Transformed, one_off_energy_j, payback_inferences
from greenlm.optimize.errors import NotAModelError, NotApplicableError, UnknownTaskError, first_line
from greenlm.optimize.harness import Measure, Measurement, Timed, measure_pass, summarise, tracker_measure, warm_up
from greenlm.optimize.results import SAVES, Comparison, OptimizeReport, VariantResult
from greenlm.optimize.spec import DEFAULT_TECHNIQUES, TechniqueSpec, parse_techniques
from greenlm.optimize.stats import per_variant_confidence, round_spread
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
    confidence: float = 0.95
    min_saving: float = 0.02
    max_repeats: int | None = None  # None: twice ``repeats``

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
        if not (isinstance(self.confidence, (int, float)) and 0.5 <= self.confidence < 1.0):
            raise ConfigError(f"--confidence must be a level in [0.5, 1), e.g. 0.95, got {self.confidence!r}.")
        if not (isinstance(self.min_saving, (int, float)) and 0.0 <= self.min_saving < 1.0):
            raise ConfigError(f"--min-saving must be a fraction in [0, 1) (0.02 = 2 %), got {self.min_saving!r}.")
        if self.max_repeats is not None and not (isinstance(self.max_repeats, int) and self.max_repeats >= 1):
            raise ConfigError(f"--max-repeats must be a whole number >= 1, got {self.max_repeats!r}.")
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
    arm: _Arm,
    m: Measurement,
    quality_drop: float | None,
    facts: dict[str, Any],
    vs_baseline: Comparison | None,
    rounds: list[float],
) -> VariantResult:
    ev = arm.evaluation
    return VariantResult(
        name=arm.name,
        technique=arm.technique,
        params=arm.params,
        description=arm.description,
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
        vs_baseline=vs_baseline,
        energy_by_round=tuple(rounds),
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
        f"{batch_size}); warm-up pass excluded. The windows of all variants are taken in "
        "rounds, one window of each per round in a shuffled order.",
        "vs_baseline": "energy ratio to the baseline: geometric mean of the per-round ratios "
        "(each variant's window paired with the baseline's of the same round), with a Student "
        "t-interval on the log ratios, Bonferroni-adjusted so that all intervals together hold "
        "at the family-wise confidence",
        "energy_j_per_token": "window energy / tokens generated, median over windows (generative tasks only)",
        "latency_p50_ms": "wall clock (time.perf_counter) of each inference call, pooled over all measured windows",
        "throughput_per_s": "inferences per second of summed call time, median over windows",
        "peak_memory_mb": peak_memory_source,
        "size_mb": "bytes of torch.save(state_dict) / 1,000,000 (dense storage: zeros count)",
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


@dataclass
class _Arm:
    """The baseline or one variant while the run is under way."""

    name: str
    technique: str
    params: dict[str, float]
    description: str
    model: Any = None
    evaluation: Any = None
    facts: dict[str, Any] = field(default_factory=dict)
    peak: tuple[float, str] = (0.0, "")
    passes: list[Timed] = field(default_factory=list)
    round_ids: list[int] = field(default_factory=list)  # the round of each pass
    extend: bool = True  # may still get extra rounds
    skipped_reason: str | None = None
    index: int = 0  # 0 for the baseline, 1..n for the variants


#: Above these, the baseline's own round-to-round spread (coefficient of variation) or its
#: trend over the run is reported as drift: at a 10 % spread and 5 rounds, savings under about
#: 16 % (1 variant) to 33 % (16 variants) cannot be told from noise (docs/optimize.md).
DRIFT_CV = 0.10
DRIFT_TREND = 0.10
#: Windows shorter than this are too coarse for the meters (CPU time ticks, sampling interval).
SHORT_WINDOW_S = 0.25


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
    n_variants = len(specs)
    total = (n_variants + 1) * (1 + config.repeats)
    done = 0

    def tick(desc: str, n: int = 1, more: int = 0) -> None:
        nonlocal done, total
        done += n
        total += more
        if progress is not None:
            progress(desc, min(done, total), total)

    def label(arm: _Arm) -> str:
        return "baseline" if arm.index == 0 else f"variant {arm.index}/{n_variants} {arm.name}"

    batches = task.measure_batches()
    n_items = sum(task.items(b) for b in batches)
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    base = _Arm("baseline", "none", {}, f"unchanged model ({dtype}, {device})", model=model)
    tick("baseline: evaluating", 0)
    task.prepare(model)
    base.evaluation = task.evaluate(model)
    base.peak = warm_up(model, task.run, batches)
    tick("baseline: warmed up")
    arms = [base]
    # build every variant first (each evaluated and warmed up right away, so a variant whose
    # kernels fail is skipped before the rounds); all stay in memory for the rounds
    for i, spec in enumerate(specs, 1):
        arm = _Arm(spec.name, spec.technique, spec.params, "", index=i)
        arms.append(arm)
        tick(f"{label(arm)}: building", 0)
        steps = [0]

        def on_step(arm: _Arm = arm, steps: list[int] = steps) -> None:  # training progress
            steps[0] += 1
            tick(f"{label(arm)}: training step {steps[0]}", 0)

        try:
            t = apply_spec(spec, model, task, measure, config.seed, on_step)
            arm.model, arm.description, arm.facts = t.model.eval(), t.description, dict(t.facts)
            tick(f"{label(arm)}: evaluating", 0)
            arm.evaluation = task.evaluate(arm.model)
            arm.peak = warm_up(arm.model, task.run, batches)
        except NotApplicableError as e:
            arm.skipped_reason, arm.model = e.reason, None
        except _KERNEL_ERRORS as e:
            logger.debug("variant %s failed", spec.name, exc_info=True)
            arm.skipped_reason, arm.model = _failed(e), None
        tick(f"{label(arm)}: {'skipped' if arm.skipped_reason else 'built'}")
    # rounds: one window of every live model per round, in a shuffled order, so that load
    # changes hit every variant alike and each variant's windows pair with the baseline's
    rng = random.Random(config.seed)
    per_token = task.generative
    metric = "energy_j_per_token" if per_token else "energy_j_per_1k"
    max_rounds = config.max_repeats if config.max_repeats is not None else 2 * config.repeats
    max_rounds = max(max_rounds, config.repeats) if config.repeats >= 2 else config.repeats

    def measure_round(r: int, group: list[_Arm], total_rounds: int) -> None:
        rng.shuffle(group)
        for arm in group:
            tick(f"{label(arm)} round {r}/{total_rounds}")
            try:
                arm.passes.append(measure_pass(arm.model, task.run, batches, measure))
                arm.round_ids.append(r)
            except _KERNEL_ERRORS as e:
                if arm is base:
                    raise
                logger.debug("variant %s failed while measured", arm.name, exc_info=True)
                arm.skipped_reason, arm.model, arm.passes, arm.round_ids = _failed(e), None, [], []

    def compare(arm: _Arm, comparisons: int) -> Comparison:
        by_round = dict(zip(base.round_ids, _round_energies(base.passes, n_items, per_token)))
        mine = _round_energies(arm.passes, n_items, per_token)
        pairs = [(e, by_round[r]) for r, e in zip(arm.round_ids, mine) if r in by_round]
        return Comparison.paired(
            [v for v, _ in pairs],
            [b for _, b in pairs],
            comparisons=comparisons,
            confidence=config.confidence,
            min_saving=config.min_saving,
            metric=metric,
        )

    for r in range(1, config.repeats + 1):
        measure_round(r, [a for a in arms if a.skipped_reason is None], config.repeats)
    base_q = base.evaluation.quality.value
    # extra rounds, up to max_rounds, for the undecided candidates only (within the quality
    # budget, an estimated saving above min_saving, an interval still reaching below it),
    # each with the baseline: a real saving near the noise is then decided, not left to chance
    r = config.repeats
    while r < max_rounds:
        live = [a for a in arms[1:] if a.skipped_reason is None]
        now = {a.name: compare(a, len(live)) for a in live}
        within = [a for a in live if _within(a, base_q, task, config)]
        # the saving an undecided variant must be able to reach to matter: the lower end of
        # the best decided saving (a variant below it cannot become the recommendation)
        floor = max((now[a.name].saving_low or 0.0 for a in within if now[a.name].verdict == SAVES), default=None)
        undecided = [
            a
            for a in within
            if a.extend
            and _undecided(now[a.name], config.min_saving)
            and (floor is None or (now[a.name].saving_high or 0.0) >= floor)
        ]
        for a in live:
            a.extend = a in undecided  # once decided (or left out), a variant is not measured again
        if not undecided:
            break
        r += 1
        tick(f"round {r}/{max_rounds}: {len(undecided)} undecided", 0, more=1 + len(undecided))
        measure_round(r, [base, *undecided], max_rounds)
    measured = [a for a in arms[1:] if a.skipped_reason is None]
    level = per_variant_confidence(config.confidence, len(measured))
    base_m = summarise(base.passes, n_items, model, *base.peak)
    base_rounds = _round_energies(base.passes, n_items, per_token)
    cv, trend = round_spread(base_rounds)
    results = [
        _result(
            base,
            base_m,
            0.0,
            {"energy_round_cv": cv, "energy_trend": trend},
            None,
            base_rounds,
        )
    ]
    for arm in arms[1:]:
        if arm.skipped_reason is not None:
            results.append(VariantResult(arm.name, arm.technique, arm.params, skipped_reason=arm.skipped_reason))
            continue
        m = summarise(arm.passes, n_items, arm.model, *arm.peak)
        rounds = _round_energies(arm.passes, n_items, per_token)
        c = compare(arm, len(measured))
        facts = dict(arm.facts)
        one_off_j = one_off_energy_j(facts)
        if one_off_j is not None:
            facts.update(_payback(one_off_j, base_m.energy_j_per_1k, c))
        results.append(
            _result(
                arm,
                m,
                task.quality_drop(base_q, arm.evaluation.quality.value),
                facts,
                c,
                rounds,
            )
        )
        arm.model = None
    del arms
    warnings = list(carbon.warnings())
    warnings += _drift_warnings(cv, trend, config.repeats, bool(measured))
    window_s = statistics.median(t.window.duration_s for t in base.passes)
    if window_s < SHORT_WINDOW_S:
        warnings.append(
            f"Measuring windows are short (median {humanize.duration(window_s)}): the CPU-time meter counts in "
            "10 ms ticks and the tracker samples every 0.1 s, so each window's energy is coarse and the "
            f"intervals wide; give more --samples, for windows of {2 * SHORT_WINDOW_S:g} s or more."
        )
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
            "rounds": len(base.passes),
            "max_rounds": max_rounds,
            "interleaved": True,
            "confidence": config.confidence,
            "confidence_per_variant": level,
            "min_saving": config.min_saving,
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


#: What a variant's kernels raise when they do not run on this model/device.
_KERNEL_ERRORS = (RuntimeError, NotImplementedError, TypeError, ValueError, AttributeError)


def _failed(e: BaseException) -> str:
    return f"does not run on this model/device: {type(e).__name__}: {first_line(e)}"


def _within(arm: _Arm, base_q: float | None, task: Task, config: OptimizeConfig) -> bool:
    drop = task.quality_drop(base_q, arm.evaluation.quality.value)
    return drop is not None and drop <= config.max_quality_drop + 1e-12


def _undecided(c: Comparison, min_saving: float) -> bool:
    """An estimated saving above ``min_saving`` whose interval still reaches below it."""
    return c.low is not None and c.verdict != SAVES and c.saving > min_saving


def _round_energies(passes: list[Timed], n_items: int, per_token: bool) -> list[float]:
    """Each round's energy in the comparison's metric (J per generated token, or per 1,000)."""
    if per_token:
        return [t.window.energy_j / t.tokens if t.tokens else math.nan for t in passes]
    return [t.window.energy_j / n_items * 1000.0 for t in passes]


def _payback(one_off_j: float, base_j_per_1k: float, est: Comparison) -> dict[str, Any]:
    """Inferences to pay back a one-off energy from the paired saving, with its interval."""

    def at(ratio: float | None) -> float | None:
        return None if ratio is None else payback_inferences(one_off_j, base_j_per_1k, base_j_per_1k * ratio)

    return {"payback_inferences": at(est.ratio), "payback_inferences_interval": [at(est.low), at(est.high)]}


def _drift_warnings(cv: float | None, trend: float | None, rounds: int, any_variant: bool) -> list[str]:
    out = []
    if rounds < 2 and any_variant:
        out.append(
            "One round only: an energy difference cannot be told from noise without a second round, so no "
            "variant is recommended as a saving; use --repeats 5."
        )
    if cv is not None and trend is not None and (cv > DRIFT_CV or abs(trend) > DRIFT_TREND):
        out.append(
            f"The machine's load drifted during the run: the baseline's energy varied by {humanize.percent(cv)} "
            f"between rounds (trend {'+' if trend >= 0 else ''}{humanize.percent(trend)} over the run; a quiet "
            f"machine stays within {humanize.percent(DRIFT_CV)}). Rounds were interleaved, so the drift widens "
            "the intervals rather than favouring a variant; re-run on a quieter machine for tighter ones."
        )
    return out


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
