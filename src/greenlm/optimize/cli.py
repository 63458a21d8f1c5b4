"""``greenlm optimize`` and ``greenlm optimize finetune``: argument parsing only.

Cheap to import: torch, transformers and rich are imported when a command runs. The
commands build :class:`~greenlm.optimize.runner.OptimizeConfig` /
:class:`~greenlm.optimize.lora.FinetuneConfig`, the same objects the Python API takes.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from greenlm import argtypes as at
from greenlm.optimize.spec import DEFAULT_TECHNIQUES


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default="minilm",
        type=at.Text(at.PATH_CHARS, example="minilm"),
        metavar="PATH|minilm|smollm2",
        help="the model: built-in minilm (all-MiniLM-L6-v2) or smollm2 "
        "(SmolLM2-135M-Instruct), or a local transformers folder",
    )
    p.add_argument(
        "--data",
        type=at.InputFile(example="items.txt", as_path=True),
        metavar="PATH",
        help="text file, one item per line ('__label__X text' for labels); "
        "default: gensim's polarity sentences / Lee corpus",
    )
    p.add_argument(
        "--device", default="cpu", choices=["cpu", "cuda", "auto"], help="where the model runs (default cpu)"
    )
    p.add_argument("--location", type=at.LOCATION, help="grid location for CO2e (DEU, US-CA, aws:us-east-1, ...)")
    p.add_argument("--seed", type=at.Whole(0, 2**32 - 1, example="0"), default=0, help="data split and training seed")
    p.add_argument(
        "--report",
        type=at.OutputDir(as_path=True),
        metavar="DIR",
        help="write JSON, CSV and the Pareto plot (PNG) into DIR",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def register(subparsers: Any) -> None:
    """Add ``optimize`` (and its ``finetune`` mode) to greenlm's sub-commands."""
    p = subparsers.add_parser(
        "optimize",
        help="measure what compression techniques save in energy and cost in quality",
        description="Measure, on this machine, the energy per 1,000 inferences (and per "
        "token) of a model and of variants built with each technique, in interleaved rounds, and "
        "their quality; recommend the variant whose saving is significant (its whole confidence "
        "interval) within --max-quality-drop, or keep the baseline when none saves beyond noise.",
    )
    _common(p)
    p.add_argument(
        "--task",
        choices=["embedding", "classification", "causal-lm"],
        help="default: embedding for minilm, causal-lm for smollm2, else from the model's architecture",
    )
    p.add_argument(
        "--techniques",
        type=at.Text(1000, example=DEFAULT_TECHNIQUES),
        default=DEFAULT_TECHNIQUES,
        help=f"comma-separated; name[:arg[:key=value]], '+' stacks (default {DEFAULT_TECHNIQUES})",
    )
    p.add_argument(
        "--max-quality-drop",
        type=at.Number(0.0, 100.0, example="0.01"),
        default=0.01,
        metavar="FRACTION",
        help="quality budget: absolute for accuracy/cosine, relative rise for perplexity (default 0.01)",
    )
    p.add_argument(
        "--repeats",
        type=at.Whole(1, 10**4, example="5"),
        default=5,
        help="measuring rounds: one window of every variant per round (default 5)",
    )
    p.add_argument(
        "--max-repeats",
        type=at.Whole(1, 10**5, example="10"),
        metavar="ROUNDS",
        help="extra rounds, up to this many in all, for variants whose saving is not yet decided "
        "(default: twice --repeats)",
    )
    p.add_argument(
        "--samples",
        type=at.Whole(1, 10**7, example="64"),
        help="inferences per window (default 64; 8 prompts for causal-lm)",
    )
    p.add_argument("--batch-size", type=at.Whole(1, 10**5, example="8"), default=1, help="inputs per inference call")
    p.add_argument(
        "--max-new-tokens",
        type=at.Whole(1, 10**6, example="16"),
        default=16,
        help="tokens generated per prompt (causal-lm)",
    )
    p.add_argument("--threads", type=at.Whole(1, 4096, example="4"), help="torch CPU threads (default: torch's choice)")
    p.add_argument(
        "--confidence",
        type=at.Number(0.5, 0.9999, example="0.95"),
        default=0.95,
        metavar="LEVEL",
        help="family-wise confidence of the saving intervals (default 0.95)",
    )
    p.add_argument(
        "--min-saving",
        type=at.Number(0.0, 1.0, example="0.02"),
        default=0.02,
        metavar="FRACTION",
        help="a saving counts when its whole interval is above this (default 0.02 = 2 %%)",
    )
    p.set_defaults(func=cmd_optimize)

    sub = p.add_subparsers(dest="optimize_mode", metavar="MODE")
    f = sub.add_parser(
        "finetune",
        help="compare full fine-tuning, LoRA, mixed precision, accumulation",
        description="Train the same model on the same task once per mode and compare energy "
        "per epoch and final quality.",
    )
    _common(f)
    f.add_argument(
        "--task", choices=["classification", "causal-lm"], default="classification", help="default classification"
    )
    f.add_argument(
        "--compare",
        type=at.Text(1000, example="full,lora"),
        default="full,lora,lora+amp",
        help="modes: full or lora[:r=N], with +amp and +accum=N (default full,lora,lora+amp)",
    )
    f.add_argument("--epochs", type=at.Whole(1, 10**4, example="3"), default=3, help="epochs per mode (default 3)")
    f.add_argument(
        "--batch-size", type=at.Whole(1, 10**5, example="16"), default=16, help="examples per step (default 16)"
    )
    f.add_argument(
        "--lr-full",
        type=at.Number(0.0, 10.0, lo_open=True, example="5e-5"),
        default=5e-5,
        help="learning rate of full fine-tuning (default 5e-5)",
    )
    f.add_argument(
        "--lr-lora",
        type=at.Number(0.0, 10.0, lo_open=True, example="1e-3"),
        default=1e-3,
        help="learning rate of LoRA modes (default 1e-3)",
    )
    f.set_defaults(func=cmd_finetune)


@contextlib.contextmanager
def _progress(label: str) -> Iterator[Callable[[str, int, int], None]]:
    """Progress on stderr (:mod:`greenlm.progress`); yields the ``progress(desc, done, total)`` callback."""
    from greenlm.progress import Progress

    with Progress(label, stream=sys.stderr) as bar:
        yield bar.callback()


def _quiet_libraries() -> None:
    """Keep transformers' own progress bars and load reports off the user's terminal."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def cmd_optimize(args: argparse.Namespace) -> int:
    from greenlm.optimize.runner import OptimizeConfig, optimize

    config = OptimizeConfig(
        model=args.model,
        task=args.task,
        data=args.data,
        techniques=args.techniques,
        max_quality_drop=args.max_quality_drop,
        repeats=args.repeats,
        samples=args.samples,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        device=args.device,
        location=args.location,
        seed=args.seed,
        threads=args.threads,
        report_dir=args.report,
        confidence=args.confidence,
        min_saving=args.min_saving,
        max_repeats=args.max_repeats,
    )
    config.validate()  # fail on bad input before loading anything
    _quiet_libraries()
    with _progress("optimize") as progress, contextlib.redirect_stdout(sys.stderr):
        report = optimize(config, progress=progress)
    if args.json:
        from greenlm.optimize.report import to_json

        print(to_json(report))
    else:
        from rich.console import Console

        from greenlm.optimize.report import render

        render(report, Console())
        if args.report:
            print(f"Wrote {args.report}/optimize.json, optimize.csv and pareto.png")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from greenlm.optimize.lora import FinetuneConfig, finetune

    config = FinetuneConfig(
        model=args.model,
        task=args.task,
        data=args.data,
        compare=args.compare,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr_full=args.lr_full,
        lr_lora=args.lr_lora,
        device=args.device,
        location=args.location,
        seed=args.seed,
        report_dir=args.report,
    )
    config.validate()
    _quiet_libraries()
    with _progress("optimize finetune") as progress, contextlib.redirect_stdout(sys.stderr):
        report = finetune(config, progress=progress)
    if args.json:
        import json

        print(json.dumps(report.to_dict(), indent=2))
        return 0
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from greenlm import humanize

    unit = humanize.energy_unit([m.energy_j_per_epoch for m in report.modes if not m.skipped_reason])
    size = dict(humanize.ENERGY_UNITS)[unit]
    table = Table(title=Text(f"greenlm optimize finetune: {report.model} ({report.task})"), box=box.SIMPLE_HEAD)
    for i, h in enumerate(("mode", "trained", f"{unit}/epoch", "time/epoch", "peak MB", "quality")):
        table.add_column(Text(h), justify="left" if i == 0 else "right", overflow="fold")
    notes = []
    for m in report.modes:
        if m.skipped_reason:
            table.add_row(Text(m.name), *(Text("-") for _ in range(5)))
            notes.append(f"{m.name}: skipped: {m.skipped_reason}")
            continue
        q = humanize.sig(m.quality.value) if m.quality and m.quality.value is not None else "-"
        table.add_row(
            *(
                Text(c)
                for c in (
                    m.name,
                    humanize.count(m.trainable_params),
                    humanize.sig(m.energy_j_per_epoch / size) if m.energy_j_per_epoch is not None else "-",
                    humanize.duration(m.duration_s_per_epoch),
                    humanize.sig(m.peak_memory_mb) if m.peak_memory_mb is not None else "-",
                    q,
                )
            )
        )
    console = Console()
    console.print(table)
    metric = next((m.quality.metric for m in report.modes if m.quality), "quality")
    provenance = sorted({m.provenance for m in report.modes if m.provenance})
    console.print(Text(f"quality: {metric} after the last epoch; energy: {', '.join(provenance) or '-'}."))
    for line in notes:
        console.print(Text(line))
    for w in report.warnings:
        console.print(Text.assemble(("note:", "yellow"), " ", w))
    return 0
