"""Files shipped inside the package: the miniature worlds' models.

``models/tiny-world-v5`` (the default, ``conf/model/tiny_world_v5.yaml``) is the 0.94M-parameter Llama (architecture
``tiny_model.ARCHS["world"]``, a word-level tokenizer) that ``make tiny-model`` pretrained on world v5's corpus and
then instruction-tuned (``miniature/pretrain.py``, ``miniature/instruct.py``; seed 0). ``models/tiny-world-llama``
(``conf/model/tiny_world.yaml``, ``experiment=miniature_v3``) is world v3's 0.84M-parameter base model with a
byte-level tokenizer (``make tiny-model-v3``). The configs point at them through the ``${bundled_model:...}``
resolver (``config.bundled_model``). The data they are adapted on is not shipped: the world's generator writes it
into the cache on first use (``data/build.py``), at full size (``data=miniature_v5``, ``data=miniature``) or small
(``data=smoke``, the fast-dev preset).
"""

from __future__ import annotations

from pathlib import Path

MODELS_DIR: Path = Path(__file__).resolve().parent / "models"

__all__ = ["MODELS_DIR"]
