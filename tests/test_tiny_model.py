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


def test_built_once_and_rebuilt_when_damaged_or_built_by_other_code(tmp_path):
    import json

    from d2lora_exp.build_once import MARKER, read_record

    path = tiny_model.build(tmp_path / "m", seed=0)
    weights = path / "model.safetensors"
    good, mtime = weights.read_bytes(), weights.stat().st_mtime_ns
    assert tiny_model.build(tmp_path / "m", seed=0) == path and weights.stat().st_mtime_ns == mtime  # reused
    weights.write_bytes(good[:100])  # truncated
    assert tiny_model.build(tmp_path / "m", seed=0) == path and weights.read_bytes() == good
    tiny_model.build(tmp_path / "m", seed=1)  # another seed in the same dir: rebuilt, never reused
    assert weights.read_bytes() != good and json.loads(read_record(path, MARKER)["stamp"])["seed"] == 1
    (path / MARKER).unlink()  # a dir from the previous builder (no digests): rebuilt
    assert tiny_model.build(tmp_path / "m", seed=0) == path
    assert weights.read_bytes() == good and (path / MARKER).exists()


def test_one_dict_of_architectures():
    assert set(tiny_model.ARCHS) == {"tiny", "world"}
    tok = tiny_model.build_tokenizer()
    assert tiny_model.config(tok, "world").num_hidden_layers == 4 and tiny_model.config(tok, "tiny").hidden_size == 64


def test_word_tokenizer_makes_words_and_numbers_single_tokens_and_encodes_anything():
    texts = ["Raj has 17 books and sells 2. How many books does Raj have left?"] * 50 + ["Ana buys 4 more pens."] * 50
    tok = tiny_model.train_word_tokenizer(texts, vocab_size=320)
    assert tok.get_vocab() == tiny_model.train_word_tokenizer(texts, vocab_size=320).get_vocab()  # deterministic
    pieces = [tok.decode([i]) for i in tok(texts[0], add_special_tokens=False).input_ids]
    assert {" has", " 17", " books", " sells"} <= set(pieces) and len(pieces) < len(texts[0]) / 3
    text = "Héllo, 1,234 × 5 = ?\n unseen wörds"  # bytes it never saw still round-trip, after the prefix space
    assert tok.decode(tok(text, add_special_tokens=False).input_ids) == " " + text
    reply = tok(tok.apply_chat_template([{"role": "assistant", "content": "Ana has 17"}], tokenize=False),
                add_special_tokens=False).input_ids
    assert tok.convert_ids_to_tokens(reply)[2] == tok.convert_ids_to_tokens(tok(" Ana").input_ids)[0]  # as mid-text
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, add_special_tokens=False).input_ids
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id and ids[-1] == tok.convert_tokens_to_ids(
        "<|assistant|>")
    assert tok.eos_token == "<|eot|>" and tok.pad_token == "<|pad|>" and tok.pad_token_id != tok.eos_token_id
