"""Padding-free SFT batches (TRL `padding_free=True`) compute what padded batches compute, on CPU with SDPA and eager.

TRL flattens a padding-free batch into one row and marks where each sequence starts by its position ids;
transformers (masking_utils.find_packed_sequence_indices) turns those into a block-diagonal mask for SDPA and eager
attention, so no token attends across rows. Flash-attention's varlen kernels (GPU) get the same boundaries as
`cu_seq_lens`. Measured here through the project's SFT trainer: loss and LoRA gradients of one batch agree with the
padded batch's to float32 rounding: measured |Δloss| = 0 and max |Δgrad| <= 1e-8 against gradients up to 0.05; asserted
within 1e-6 (loss, relative) and 1e-5 of the largest gradient (LoRA dropout off: its masks are drawn per layout).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from d2lora_exp import modeling
from d2lora_exp.phases import adapt
from d2lora_exp.phases.prepare import prepare

pytestmark = pytest.mark.e2e


def _loss_and_grads(trainer, model, batch) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    model.train()
    loss = trainer.compute_loss(model, batch)
    loss.backward()
    return loss.item(), {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_padding_free_equals_padded(make_cfg, tmp_path, attn):
    cfg = make_cfg("method=sft", "lora.dropout=0", f"model.attn_implementation={attn}")
    plan = prepare(cfg, tmp_path / "run")
    model = modeling.load_model(plan.model_source, cfg.model, plan.device, plan.dtype)
    model, _ = adapt.start_adapter(plan, model, None)
    with torch.no_grad():  # a trained-looking adapter: B = 0 would leave the LoRA path out of the comparison
        generator = torch.Generator().manual_seed(0)
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    rows = plan.train_rows
    common = dict(per_device_train_batch_size=len(rows), train_sampling_strategy="sequential", disable_tqdm=True)
    results, batches = {}, {}
    for layout, extra in (("padded", {}), ("padding_free", {"padding_free": True, "max_length": None})):
        config = dataclasses.replace(plan.adapt_config, output_dir=str(tmp_path / layout), **common, **extra)
        trainer = plan.method.build_trainer(model, plan.tokenizer, rows, config, cfg.method, [])
        batches[layout] = next(iter(trainer.get_train_dataloader()))
        results[layout] = _loss_and_grads(trainer, model, batches[layout])
    padded, flat = batches["padded"], batches["padding_free"]
    assert flat["input_ids"].shape[0] == 1 and "attention_mask" not in flat
    assert flat["input_ids"].numel() == int(padded["attention_mask"].sum()) < padded["input_ids"].numel()

    (loss_p, grads_p), (loss_f, grads_f) = results["padded"], results["padding_free"]
    assert loss_f == pytest.approx(loss_p, rel=1e-6)
    scale = max(g.abs().max().item() for g in grads_p.values())
    assert scale > 0
    for name, grad in grads_p.items():
        torch.testing.assert_close(grads_f[name], grad, rtol=1e-4, atol=1e-5 * scale, msg=name)

    # The control: the same flat row read as ONE sequence (no boundaries in the position ids) lets tokens attend
    # across rows, and the loss moves; so the agreement above is the sequences being kept apart.
    joined = {**flat, "position_ids": torch.arange(flat["input_ids"].shape[1])[None]}
    joined = {k: v for k, v in joined.items() if k not in ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")}
    loss_joined, _ = _loss_and_grads(trainer, model, joined)
    assert abs(loss_joined - loss_p) > 1e-3
