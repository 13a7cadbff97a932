"""d2lora_exp: reproduce and extend D2LoRA (data-driven LoRA initialisation by a general warm-up)."""

__version__ = "0.1.0"
