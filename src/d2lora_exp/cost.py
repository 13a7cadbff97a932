"""What a run's training cost, per phase: real tokens, FLOPs by a stated formula, and seconds (metrics.json `cost`).

The paper claims the warm-up "reduces data cost"; to weigh that, each run records what its own adaptation cost and
what the warm-up it started from cost, the latter once, by the job that trained the cached entry, so a sweep's
report can spread it over the runs that reuse it (report_cost.py).

FLOPs are counted, not measured, with the usual dense-transformer estimate (Kaplan et al. 2020) split for LoRA:

  per real token = 2 N   forward through every matrix multiply (frozen base weights and LoRA A, B alike)
                 + 2 N   backward, the gradients of the activations through the same matrices (frozen ones too)
                 + 2 N_t backward, the gradients of the trainable (adapter) weights only
                 + 2 N   with activation (gradient) checkpointing: the forward recomputed during the backward
                         (counted whole, also when `every_n_layers` checkpoints only some layers)
                 + 2 N   DPO only: the reference model's forward over the same rows (once per epoch; with
                         precompute_ref_log_probs once in all)

N is the number of weights of the model's linear layers (the LM head included, the input embedding's lookup not),
N_t the trainable ones. Ignored: attention's sequence-length term (QK^T and AV, about 4 x layers x context x width
per token forward), norms, activations, softmax, the embedding lookup, the optimizer step, and evaluation. Tokens
are the real (non-padding) tokens fed to the model; `flops_with_padding` counts every position a batch held, the
compute a padded batch actually did.
"""

from __future__ import annotations

from typing import Any

from torch import nn

FORMULA = ("flops = tokens x (2N forward + 2N activation gradients + 2N_t adapter weight gradients [+ 2N recomputed "
           "forward under gradient checkpointing] [+ 2N DPO reference forward]); N = weights of the linear layers "
           "(frozen and adapter), N_t = trainable weights; attention's sequence-length term, norms, embedding lookup, "
           "optimizer and evaluation ignored")


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """N (weights of every linear layer, what a token's matrix multiplies touch) and N_t (trainable parameters)."""
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"linear": linear, "trainable": trainable}


def per_token(params: dict[str, int], recompute: bool = False, reference_passes: float = 0.0) -> float:
    """Training FLOPs per token by the formula above; `reference_passes`: DPO reference forwards per trained token."""
    n, n_t = params["linear"], params["trainable"]
    return 2 * n + 2 * n + 2 * n_t + (2 * n if recompute else 0) + 2 * n * reference_passes


def reference_passes(trainer_args: Any) -> float:
    """DPO's reference forwards per trained token: one per epoch, or one in all when precomputed; 0 for SFT/ORPO
    (their configs have no reference)."""
    precompute = getattr(trainer_args, "precompute_ref_log_probs", None)
    if precompute is None:
        return 0.0
    # Precomputed: one pass over every row in all, i.e. 1/epochs per trained token (more than 1 below one epoch).
    return 1.0 / float(trainer_args.num_train_epochs) if precompute else 1.0


def phase_flops(model: nn.Module, trainer_args: Any, tokens: dict[str, Any]) -> dict[str, Any]:
    """What one training phase records: the counts N and N_t, FLOPs per token, and the phase's FLOPs (null when its
    tokens could not be counted)."""
    params = parameter_counts(model)
    recompute = getattr(trainer_args, "activation_checkpointing", None)  # transformers 5; older: gradient_checkpointing
    recompute = getattr(trainer_args, "gradient_checkpointing", False) if recompute is None else recompute
    rate = per_token(params, bool(recompute), reference_passes(trainer_args))
    real, positions = tokens.get("non_padding"), tokens.get("positions")
    return {"params": params, "per_token": rate, "flops": None if real is None else rate * real,
            "flops_with_padding": None if positions is None else rate * positions}


def _phase(section: dict[str, Any] | None, seconds: float | None, **extra: Any) -> dict[str, Any] | None:
    if section is None:
        return None
    tokens = section.get("tokens") or {}
    flops = section.get("flops") or {}
    found = {"tokens": tokens.get("non_padding"), "positions": tokens.get("positions"), "flops": flops.get("flops"),
             "flops_with_padding": flops.get("flops_with_padding"), "seconds": seconds, **extra}
    if not flops:  # a warm-up cached before FLOPs were recorded
        found["reason"] = "not recorded by the job that trained it (an older cache entry)"
    return found


def of_run(data: dict[str, Any], timings: dict[str, float]) -> dict[str, Any]:
    """metrics.json `cost`: per phase, real tokens, FLOPs and seconds. A reused warm-up shows the cost of the job that
    built the cache entry (`reused`: true), which this run did not pay again; null phases did not run."""
    warm, adapt = data.get("warmup"), data.get("adapt")
    # Training seconds over every attempt where recorded (a resumed phase, an adapter finished by an interrupted
    # attempt), like its tokens and FLOPs; else this attempt's.
    def total(section: dict[str, Any] | None, fallback: float | None) -> float | None:
        value = (section or {}).get("seconds_all_attempts")
        return fallback if value is None else value

    return {
        "formula": FORMULA,
        "warmup": _phase(warm, total(warm, warm.get("seconds") if warm else None),
                         reused=warm.get("reused") if warm else None, key=warm.get("key") if warm else None),
        "adapt": _phase(adapt, total(adapt, timings.get("adapt"))),
        "eval": {"seconds": timings.get("eval")},
    }
