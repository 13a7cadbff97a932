"""What a phase consumed: peak memory and the tokens each training batch fed the model, carried over a resume."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from trl.trainer.dpo_trainer import DataCollatorForPreference

from d2lora_exp import resources


def test_sft_and_dpo_batches_count_positions_and_real_tokens():
    sft = {"input_ids": torch.ones(2, 5, dtype=torch.long), "attention_mask": torch.tensor([[1] * 5, [1, 1, 1, 0, 0]])}
    assert resources.fed_tokens(sft) == (10, 8)
    assert resources.fed_tokens({"input_ids": torch.ones(1, 7, dtype=torch.long)}) == (7, 7)  # padding-free: none
    # TRL's own DPO collator: chosen rows then rejected rows, padded to the batch's longest.
    dpo = DataCollatorForPreference(pad_token_id=0)([{"prompt_ids": [1, 2, 3], "chosen_ids": [4, 5], "rejected_ids": [6]},
                                                     {"prompt_ids": [7, 8], "chosen_ids": [9], "rejected_ids": [10, 11]}])
    assert resources.fed_tokens(dpo) == (4 * 5, 5 + 3 + 4 + 4)


def test_orpo_batches_are_padded_to_the_longer_of_chosen_and_rejected():
    batch = {"chosen_input_ids": torch.ones(2, 6, dtype=torch.long), "rejected_input_ids": torch.ones(2, 4, dtype=torch.long),
             "chosen_attention_mask": torch.tensor([[1] * 6, [1] * 3 + [0] * 3]),
             "rejected_attention_mask": torch.tensor([[1] * 4, [1, 1, 0, 0]]),
             "prompt_input_ids": torch.ones(2, 3, dtype=torch.long)}  # part of chosen/rejected: not fed on its own
    assert resources.fed_tokens(batch) == (4 * 6, 9 + 6)


def test_an_unknown_batch_layout_gives_null_totals_with_the_reason():
    counter = resources.TokenCounter()
    counter.count({"pixel_values": torch.ones(1, 3)})
    totals = counter.totals()
    assert totals["positions"] is None and "pixel_values" in totals["reason"]


def _batch(real: int, positions: int) -> dict:
    return {"input_ids": torch.ones(1, positions, dtype=torch.long),
            "attention_mask": torch.tensor([[1] * real + [0] * (positions - real)])}


def test_counts_travel_in_the_trainer_state_of_a_checkpoint(caplog):
    before = resources.TokenCounter()
    before.count(_batch(3, 5))
    # What the Trainer writes into trainer_state.json and hands back, loaded, to on_train_begin of the resumed run.
    resumed = resources.TokenCounter()
    state = SimpleNamespace(stateful_callbacks={"TokenCounter": before.state()}, global_step=4)
    resumed.on_train_begin(None, state, None)
    resumed.count(_batch(2, 2))
    assert resumed.totals() == {"positions": 7, "non_padding": 5, "padding": 2, "from_step": 0}
    # The training seconds travel too: the resumed phase's elapsed time starts from the earlier attempts'.
    earlier = resources.TokenCounter(seconds=5.0)
    carried = resources.TokenCounter()
    carried.on_train_begin(None, SimpleNamespace(stateful_callbacks={"TokenCounter": earlier.state()}, global_step=4),
                           None)
    assert 5.0 <= carried.elapsed() < 6.0 and carried.state()["attributes"]["seconds"] >= 5.0
    # A checkpoint written without counts: the totals say they start at its step.
    old = resources.TokenCounter()
    state = SimpleNamespace(stateful_callbacks={}, global_step=4)
    old.on_train_begin(None, state, None)
    assert old.totals()["from_step"] == 4 and "TokenCounter" in state.stateful_callbacks
    assert "no token counts" in caplog.text


def test_the_counter_sees_every_batch_the_trainer_hands_the_model():
    calls = []
    trainer = SimpleNamespace(training_step=lambda model, inputs, n=None: calls.append(n) or torch.tensor(1.0))
    counter = resources.TokenCounter()
    counter.attach(trainer)
    trainer.training_step("model", _batch(2, 3), 8)
    trainer.training_step("model", _batch(1, 3), 8)
    assert calls == [8, 8] and counter.totals()["positions"] == 6 and counter.totals()["non_padding"] == 3


def test_peak_memory_is_recorded_also_when_the_phase_fails():
    usage: dict = {}
    with pytest.raises(RuntimeError), resources.peak_memory(usage):
        raise RuntimeError("out of memory")
    assert usage["host_peak_rss_mib"] > 10  # a Python process with torch loaded holds far more than 10 MiB
    if not torch.cuda.is_available():
        assert "cuda_max_allocated_mib" not in usage


def test_cuda_peaks_are_per_phase(monkeypatch):
    resets = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda: resets.append(1))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: 3 << 20)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda: 4 << 20)
    usage: dict = {}
    with resources.peak_memory(usage):
        assert resets == [1]  # reset at the phase's start
    assert (usage["cuda_max_allocated_mib"], usage["cuda_max_reserved_mib"]) == (3.0, 4.0)
