"""The miniature world: a small synthetic world for pretraining and fine-tuning a ~1M-parameter model on CPU.

`world.World(seed)` draws fictional towns, regions, rivers, animals and people; `world.pretraining_corpus`
writes plain-text documents about them (facts, arithmetic, short stories, short paragraphs); the
dataset builders write rows in the exact schemas of the real data sets the experiments use
(orpo-dpo-mix-40k, Math-Step-DPO-10K, GSM8K, econ paper abstracts, ARC-Easy), so the same loaders
and metrics run on both. `world.write_all(out_dir, seed, sizes)` writes every file, at full size
(data=miniature_v5, the default; data=miniature, world v3) or small (data=smoke, the fast-dev preset the tests use);
`pretrain.py` trains the base model (architecture `tiny_model.ARCHS["world"]`) on the corpus and `instruct.py` makes
world v5's instruct model of it. The generator is pure stdlib and
deterministic for a given seed and sizes.
"""
