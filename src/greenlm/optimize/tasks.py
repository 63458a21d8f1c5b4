"""The three tasks a model is measured on, each with its data, loop, quality and fidelity.

* ``embedding``: sentence embeddings (attention-masked mean of the last hidden state,
  L2-normalised, as all-MiniLM-L6-v2 does). Quality and fidelity are both measured
  against the baseline: the mean and the worst cosine similarity of a variant's
  embedding of a held-out sentence to the baseline's.
* ``classification``: accuracy on held-out labelled sentences. A bare encoder gets a
  logistic-regression head fitted once on the baseline's embeddings of the training split
  (the deployed model = encoder + that head; variants change the encoder). A model with a
  sequence-classification head uses its own logits. Fidelity: agreement of the predicted
  class with the baseline's.
* ``causal-lm``: perplexity on held-out documents; fidelity is the mean KL divergence of
  next-token distributions from the baseline's (nats per token) and top-1 agreement. The
  measured loop is greedy generation of a fixed number of new tokens per prompt.

A task splits its data once, deterministically (seeded shuffle), into a training part
(for distillation and fine-tuning) and a held-out part (for quality and for the measured
inference loop).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greenlm.optimize.errors import TechniqueArgumentError, UnknownTaskError

TASKS = ("embedding", "classification", "causal-lm")


@dataclass(frozen=True)
class Score:
    """A named quality or fidelity figure (``value`` None when it could not be computed)."""

    metric: str
    value: float | None


@dataclass
class Evaluation:
    quality: Score
    fidelity: Score
    extra: dict[str, float] = field(default_factory=dict)


def read_text_data(path: Path, task: str) -> tuple[list[str], list[int] | None]:
    """Read ``--data``: one item per line; ``__label__X text`` or ``X<TAB>text`` for labels."""
    if not path.is_file():
        raise TechniqueArgumentError(f"--data {path}: no such file; give a text file, one item per line")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    texts: list[str] = []
    tags: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("__label__"):
            tag, _, body = line.partition(" ")
            tags.append(tag[len("__label__") :])
            texts.append(body.strip())
        elif "\t" in line and task == "classification":
            tag, _, body = line.partition("\t")
            tags.append(tag.strip())
            texts.append(body.strip())
        else:
            texts.append(line)
    if task == "classification":
        if len(tags) != len(texts) or len(set(tags)) < 2:
            raise TechniqueArgumentError(
                f"--data {path}: classification needs every line labelled, as "
                "'__label__pos text' or 'pos<TAB>text', with at least two labels"
            )
        names = sorted(set(tags))
        return texts, [names.index(t) for t in tags]
    if len(texts) < 4:
        raise TechniqueArgumentError(f"--data {path}: need at least 4 non-empty lines")
    return texts, None


def _split(n: int, eval_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    n_eval = max(1, min(n - 1, round(n * eval_fraction)))
    return idx[n_eval:], idx[:n_eval]


def _batches(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


class Task:
    """Common parts: tokenizer, device, splits; subclasses supply the model calls."""

    name = ""
    generative = False
    quality_higher_is_better = True

    def __init__(
        self,
        tokenizer: Any,
        texts: Sequence[str],
        labels: Sequence[int] | None,
        *,
        samples: int,
        batch_size: int,
        seed: int,
        device: str,
        max_length: int = 128,
    ) -> None:
        self.tokenizer = tokenizer
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self.seed = seed
        train, held = _split(len(texts), 0.4, seed)
        self.train_texts = [texts[i] for i in train]
        self.eval_texts = [texts[i] for i in held]
        self.train_labels = [labels[i] for i in train] if labels is not None else None
        self.eval_labels = [labels[i] for i in held] if labels is not None else None
        pool = self.eval_texts or self.train_texts
        self.measure_texts = [pool[i % len(pool)] for i in range(samples)]

    # -- tokenisation -------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> dict[str, Any]:
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {k: v.to(self.device) for k, v in enc.items()}

    def measure_batches(self) -> list[dict[str, Any]]:
        """Pre-tokenised inputs of the measured loop: ``samples`` items in ``batch_size``s."""
        return [self.encode(b) for b in _batches(self.measure_texts, self.batch_size)]

    def train_batches(self, batch_size: int) -> list[tuple[dict[str, Any], Any]]:
        """Tokenised training batches with their labels (None where the task has none)."""
        import torch

        out = []
        for i, chunk in enumerate(_batches(self.train_texts, batch_size)):
            labels = None
            if self.train_labels is not None:
                lab = self.train_labels[i * batch_size : i * batch_size + len(chunk)]
                labels = torch.tensor(lab, device=self.device)
            out.append((self.encode(chunk), labels))
        return out

    # -- to be provided -----------------------------------------------------------------
    def prepare(self, baseline: Any) -> None:
        """Compute what fidelity needs from the baseline (run once, before any variant)."""

    def run(self, model: Any, batch: dict[str, Any]) -> int:
        """One inference call; returns the tokens generated (0 for non-generative tasks)."""
        raise NotImplementedError

    def items(self, batch: dict[str, Any]) -> int:
        return int(batch["input_ids"].shape[0])

    def evaluate(self, model: Any) -> Evaluation:
        raise NotImplementedError

    def quality_drop(self, baseline: float | None, value: float | None) -> float | None:
        """How much worse ``value`` is than ``baseline``, as a fraction (0.01 = 1 %)."""
        if baseline is None or value is None:
            return None
        return baseline - value

    def distill_loss(self, student: Any, teacher: Any, batch: dict[str, Any], labels: Any, temperature: float) -> Any:
        raise NotImplementedError


def mean_pool(hidden: Any, mask: Any) -> Any:
    """Attention-masked mean of token states, L2-normalised, in fp32."""
    import torch

    m = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled.float(), dim=-1)


def _hidden(model: Any, batch: dict[str, Any]) -> Any:
    """Last hidden state of a bare encoder, or of a model with a head (asked for it)."""
    get_head = getattr(model, "get_output_embeddings", None)
    has_lm_head = callable(get_head) and get_head() is not None
    if has_lm_head or getattr(model, "classifier", None) is not None:
        return model(**batch, output_hidden_states=True).hidden_states[-1]
    out = model(**batch)
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


class EmbeddingTask(Task):
    name = "embedding"

    def embed(self, model: Any, texts: Sequence[str]) -> Any:
        import torch

        parts = []
        with torch.inference_mode():
            for chunk in _batches(texts, 32):
                batch = self.encode(chunk)
                parts.append(mean_pool(_hidden(model, batch), batch["attention_mask"]).cpu())
        return torch.cat(parts)

    def prepare(self, baseline: Any) -> None:
        self.reference = self.embed(baseline, self.eval_texts)

    def run(self, model: Any, batch: dict[str, Any]) -> int:
        import torch

        with torch.inference_mode():
            mean_pool(_hidden(model, batch), batch["attention_mask"])
        return 0

    def evaluate(self, model: Any) -> Evaluation:
        emb = self.embed(model, self.eval_texts)
        cos = (emb * self.reference).sum(-1)
        return Evaluation(
            Score("cosine_to_baseline", float(cos.mean())), Score("min_cosine_to_baseline", float(cos.min()))
        )

    def distill_loss(self, student: Any, teacher: Any, batch: dict[str, Any], labels: Any, temperature: float) -> Any:
        import torch

        with torch.no_grad():
            target = mean_pool(_hidden(teacher, batch), batch["attention_mask"])
        emb = mean_pool(_hidden(student, batch), batch["attention_mask"])
        return (1.0 - (emb * target).sum(-1)).mean()


class ClassificationTask(Task):
    """Accuracy on held-out labelled sentences (see the module docstring for the head)."""

    name = "classification"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.train_labels is None or self.eval_labels is None:
            raise UnknownTaskError("classification needs labelled data (__label__X text)")
        self.n_labels = max(self.train_labels + self.eval_labels) + 1
        self.head: Any = None  # fitted logistic regression for a bare encoder

    def _has_head(self, model: Any) -> bool:
        return getattr(model, "classifier", None) is not None or getattr(model, "score", None) is not None

    def logits(self, model: Any, batch: dict[str, Any]) -> Any:
        if self.head is None:
            return model(**batch).logits.float()
        return self.head(mean_pool(_hidden(model, batch), batch["attention_mask"]))

    def prepare(self, baseline: Any) -> None:
        import torch

        if not self._has_head(baseline):
            self.head = fit_logistic_head(
                self._features(baseline, self.train_texts), torch.tensor(self.train_labels), self.n_labels
            )
        self.reference = self._predict(baseline)

    def _features(self, model: Any, texts: Sequence[str]) -> Any:
        import torch

        parts = []
        with torch.inference_mode():
            for chunk in _batches(texts, 32):
                b = self.encode(chunk)
                parts.append(mean_pool(_hidden(model, b), b["attention_mask"]).cpu())
        return torch.cat(parts)

    def _predict(self, model: Any) -> Any:
        import torch

        preds = []
        with torch.inference_mode():
            for chunk in _batches(self.eval_texts, 32):
                preds.append(self.logits(model, self.encode(chunk)).argmax(-1).cpu())
        return torch.cat(preds)

    def run(self, model: Any, batch: dict[str, Any]) -> int:
        import torch

        with torch.inference_mode():
            self.logits(model, batch)
        return 0

    def evaluate(self, model: Any) -> Evaluation:
        import torch

        pred = self._predict(model)
        acc = float((pred == torch.tensor(self.eval_labels)).float().mean())
        agree = float((pred == self.reference).float().mean())
        return Evaluation(Score("accuracy", acc), Score("prediction_agreement", agree))

    def distill_loss(self, student: Any, teacher: Any, batch: dict[str, Any], labels: Any, temperature: float) -> Any:
        import torch
        import torch.nn.functional as F

        with torch.no_grad():
            t = self.logits(teacher, batch) / temperature
        s = self.logits(student, batch) / temperature
        return (
            F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True, reduction="batchmean")
            * temperature**2
        )


def fit_logistic_head(x: Any, y: Any, n_labels: int, l2: float = 1e-3) -> Any:
    """A multinomial logistic regression on fixed features (L-BFGS, fp32, on CPU)."""
    import torch

    torch.manual_seed(0)
    head = torch.nn.Linear(x.shape[1], n_labels)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> Any:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(x), y) + l2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    head.eval()
    for p in head.parameters():
        p.requires_grad_(False)
    return _HeadOnDevice(head)


class _HeadOnDevice:
    """Applies the fitted head on whatever device the features are on."""

    def __init__(self, head: Any) -> None:
        self.head = head

    def __call__(self, features: Any) -> Any:
        if next(self.head.parameters()).device != features.device:
            self.head = self.head.to(features.device)
        return self.head(features.float())


class CausalLMTask(Task):
    name = "causal-lm"
    generative = True
    quality_higher_is_better = False

    def __init__(
        self, *args: Any, max_new_tokens: int = 16, eval_docs: int = 12, prompt_tokens: int = 16, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.max_new_tokens = max_new_tokens
        self.eval_texts = self.eval_texts[:eval_docs]
        self.prompt_tokens = prompt_tokens
        if getattr(self.tokenizer, "pad_token", None) is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._ref_logprobs: list[Any] = []
        self._ref_top1: list[Any] = []

    def encode(self, texts: Sequence[str]) -> dict[str, Any]:
        """Token ids and attention mask only: decoders take no token-type ids."""
        enc = super().encode(texts)
        return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def measure_batches(self) -> list[dict[str, Any]]:
        """Prompts = the first ``prompt_tokens`` tokens of held-out documents (left-padded)."""
        prompts = []
        for text in self.measure_texts:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][: self.prompt_tokens]
            prompts.append(self.tokenizer.decode(ids))
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        try:
            return [self.encode(b) for b in _batches(prompts, self.batch_size)]
        finally:
            self.tokenizer.padding_side = side

    def run(self, model: Any, batch: dict[str, Any]) -> int:
        import torch

        pad = self.tokenizer.pad_token_id
        with torch.inference_mode():
            out = model.generate(
                **batch,
                max_new_tokens=self.max_new_tokens,
                min_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
            )
        return int(out.shape[0] * (out.shape[1] - batch["input_ids"].shape[1]))

    def _eval_ids(self) -> list[Any]:
        return [self.encode([t])["input_ids"] for t in self.eval_texts]

    def _logprobs(self, model: Any, ids: Any) -> Any:
        import torch

        with torch.inference_mode():
            logits = model(input_ids=ids).logits[0, :-1].float()
        return torch.log_softmax(logits, -1)

    def prepare(self, baseline: Any) -> None:
        # baseline log-probabilities, kept in fp16 on CPU for the KL of every variant
        self._ids = self._eval_ids()
        self._ref_logprobs = []
        self._ref_top1 = []
        for ids in self._ids:
            lp = self._logprobs(baseline, ids).cpu()
            self._ref_top1.append(lp.argmax(-1))  # from fp32: fp16 rounding would make ties
            self._ref_logprobs.append(lp.half())

    def evaluate(self, model: Any) -> Evaluation:

        nll = 0.0
        kl = 0.0
        agree = 0.0
        n = 0
        for ids, ref, top1 in zip(self._ids, self._ref_logprobs, self._ref_top1, strict=True):
            lp = self._logprobs(model, ids).cpu()
            target = ids[0, 1:].cpu()
            nll += float(-lp.gather(1, target[:, None]).sum())
            ref32 = ref.float()
            kl += float((ref32.exp() * (ref32 - lp)).sum())
            agree += float((lp.argmax(-1) == top1).float().sum())
            n += target.numel()
        if n == 0:
            return Evaluation(Score("perplexity", None), Score("kl_to_baseline", None))
        ppl = math.exp(nll / n) if nll / n < 700 else math.inf
        # the reference is stored in fp16: rounding can make a ~1e-6 negative KL
        return Evaluation(
            Score("perplexity", ppl),
            Score("kl_to_baseline", max(0.0, kl / n)),
            {"top1_agreement": agree / n, "eval_tokens": float(n)},
        )

    def quality_drop(self, baseline: float | None, value: float | None) -> float | None:
        """Relative perplexity rise (0.05 = 5 % higher perplexity)."""
        if baseline is None or value is None:
            return None
        return value / baseline - 1.0

    def train_batches(self, batch_size: int) -> list[tuple[dict[str, Any], Any]]:
        return [(self.encode(b), None) for b in _batches(self.train_texts, batch_size)]

    def distill_loss(self, student: Any, teacher: Any, batch: dict[str, Any], labels: Any, temperature: float) -> Any:
        import torch
        import torch.nn.functional as F

        mask = batch["attention_mask"].bool()
        with torch.no_grad():
            t = teacher(**batch).logits[mask].float() / temperature
        s = student(**batch).logits[mask].float() / temperature
        return (
            F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True, reduction="batchmean")
            * temperature**2
        )


def build_task(name: str, tokenizer: Any, texts: Sequence[str], labels: Sequence[int] | None, **kwargs: Any) -> Task:
    """Make the task object; ``kwargs`` are samples, batch_size, seed, device, ..."""
    if name == "embedding":
        kwargs.pop("max_new_tokens", None)
        return EmbeddingTask(tokenizer, texts, labels, **kwargs)
    if name == "classification":
        kwargs.pop("max_new_tokens", None)
        return ClassificationTask(tokenizer, texts, labels, **kwargs)
    if name == "causal-lm":
        return CausalLMTask(tokenizer, texts, labels, **kwargs)
    raise UnknownTaskError(f"Unknown task {name!r}; choose one of {', '.join(TASKS)}.")
