"""Files shipped inside the package: the miniature world's pretrained base model.

``models/tiny-world-llama`` is the 0.84M-parameter Llama (architecture ``tiny_model.ARCHS["world"]``)
that ``python -m d2lora_exp.miniature.pretrain`` (``make tiny-model``) trained on the miniature world's
corpus (seed 0); ``conf/model/tiny_world.yaml`` points at it through the ``${bundled_model:...}``
resolver (``config.bundled_model``). The data it is adapted on is not shipped: the miniature world's
generator writes it into the cache on first use (``data/build.py``), at full size (``data=miniature``)
or small (``data=smoke``, the fast-dev preset).
"""

from __future__ import annotations

from pathlib import Path

MODELS_DIR: Path = Path(__file__).resolve().parent / "models"

__all__ = ["MODELS_DIR"]
