"""Small bundled datasets for the embedded default (tiny CPU model, demo, tests).

Each file has the exact column schema of the real hub dataset it stands in for, so the same loaders
read both. The files are produced by ``python -m d2lora_exp.bundled.generate`` (seeded, pure stdlib)
and committed; a test regenerates them and checks they are byte-identical.

=====================  ==========================================
file                   stands in for
=====================  ==========================================
orpo_dpo_mix.jsonl     mlabonne/orpo-dpo-mix-40k (train)
math_step_dpo.jsonl    xinlai/Math-Step-DPO-10K (train)
gsm8k_test.jsonl       openai/gsm8k, main (test)
econ_titles.csv        onurkeles/econ_paper_abstracts
arc_easy_test.jsonl    allenai/ai2_arc, ARC-Easy (test)
=====================  ==========================================
"""

from __future__ import annotations

from pathlib import Path

DATA_DIR: Path = Path(__file__).resolve().parent / "data"

FILES: tuple[str, ...] = (
    "orpo_dpo_mix.jsonl",
    "math_step_dpo.jsonl",
    "gsm8k_test.jsonl",
    "econ_titles.csv",
    "arc_easy_test.jsonl",
)

__all__ = ["DATA_DIR", "FILES"]
