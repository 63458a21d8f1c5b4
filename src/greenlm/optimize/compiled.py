"""Graph compilation: ``torch.compile`` (TorchInductor) of the model's forward pass.

Compilation changes no weight: it traces the forward pass into a graph and generates fused
kernels for it (C++ on CPU, Triton on GPU), which removes most of the per-operator Python
and dispatch overhead. That overhead is a large share of a small model's time at batch 1,
so this is where compiling pays; on large batches the matrix products dominate and it
saves less.

Compiling costs energy once per process (less when TorchInductor's on-disk cache is warm):
the transform runs the compiled model over the measured inputs inside one ``measure``
window and returns that energy as ``compile_energy_j`` (it includes that one pass of
inference, a small overstatement of the compile cost); the report pays it back like a
distillation's training energy. Shapes are marked dynamic, so sequence lengths that differ
from the ones compiled for do not recompile; other batch sizes seen later (the quality
evaluation) may, and that is not counted.

The forward pass of a copy is compiled in place (``model.forward``), so ``generate`` and
every other caller of the module go through the compiled graph. It must be the last step of
a variant: a later step would copy or change the module under the compiled graph.
"""

from __future__ import annotations

from typing import Any

from greenlm.optimize.base import Transformed, clone
from greenlm.optimize.errors import NotApplicableError, first_line
from greenlm.optimize.techniques import Context, Order, technique


def compile_forward(model: Any, task: Any, measure: Any) -> Transformed:
    """A copy of ``model`` whose forward pass is compiled by TorchInductor, compiled now over
    ``task``'s measured inputs inside one ``measure`` window.
    """
    import torch

    if not callable(getattr(torch, "compile", None)):
        raise NotApplicableError("this torch has no torch.compile (torch >= 2.0 needed)")
    new = clone(model)
    new.forward = torch.compile(new.forward, dynamic=True)
    batches = task.measure_batches()

    def warm() -> None:
        for batch in batches:
            task.run(new, batch)

    try:
        window = measure(warm)
    except Exception as e:  # the compiler's own failure: a missing C++ compiler, an unsupported op
        raise NotApplicableError(
            f"torch.compile failed on this model/device ({type(e).__name__}: {first_line(e)}); TorchInductor "
            "needs a C++ compiler (g++) and the Python headers on CPU, Triton on GPU"
        ) from e
    return Transformed(
        new,
        f"forward pass compiled by torch.compile (TorchInductor, dynamic shapes); compiled over "
        f"{len(batches)} measured batch(es) in {window.duration_s:.1f} s, paid once per process",
        {
            "compile_energy_j": window.energy_j,
            "compile_duration_s": window.duration_s,
            "compile_provenance": window.provenance,
        },
    )


@technique(
    "compile",
    summary="torch.compile (TorchInductor) of the forward pass of a copy",
    order=Order(last="a later step would change the model under the compiled graph", example="heads:0.25+bf16+compile"),
    one_off_energy={"compile_energy_j": "compilation"},
)
def _compile(model: Any, args: dict[str, float], ctx: Context) -> Transformed:
    return compile_forward(model, ctx.task, ctx.measure)
