from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from d2lora_exp import tiny_model


def test_build_is_deterministic_and_loads_like_a_hub_model(tmp_path):
    a = tiny_model.build(tmp_path / "a", seed=0)
    b = tiny_model.build(tmp_path / "b", seed=0)
    c = tiny_model.build(tmp_path / "c", seed=1)
    wa, wb, wc = (load_file(str(p / "model.safetensors")) for p in (a, b, c))
    assert all((wa[k] == wb[k]).all() for k in wa)
    assert any((wa[k] != wc[k]).any() for k in wa)
    model = AutoModelForCausalLM.from_pretrained(a)
    assert model.config.model_type == "llama"
    assert not list(a.parent.glob("a.tmp-*"))  # the atomic write left no temp dir


def test_tokenizer_round_trips_and_template_has_one_bos(tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_model.build(tmp_path / "m"))
    text = "Héllo, 1,234 × 5 = ?\n"
    assert tok.decode(tok(text, add_special_tokens=False).input_ids) == text
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, add_special_tokens=False).input_ids
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
    assert prompt.endswith("<|assistant|>")
