"""A model folder of real size with no weights: the Qwen2.5-7B-Instruct architecture (its
config.json shape: 28 layers, hidden 3584, 152,064-token vocabulary) and a locally trained
tokenizer padded to that vocabulary, for vLLM's ``load_format=dummy`` (random weights).

Nothing is downloaded. The answers are noise; the folder measures serving at the size a GPU
really serves (memory, KV cache, kernels), which the tiny test model cannot.

    python benchmarks/real_size_model.py DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.real_engine.tiny_model import CHAT_TEMPLATE, SPECIALS, _corpus  # noqa: E402

QWEN25_7B = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "hidden_act": "silu",
    "max_position_embeddings": 32768,
    "max_window_layers": 28,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "sliding_window": 131072,
    "use_sliding_window": False,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "vocab_size": 152064,
}
"""Qwen2.5-7B-Instruct's config.json (its published shape; token ids set by build())."""

BPE_VOCAB = 16384
"""Tokens learned from local text; the rest of the vocabulary is reserved special tokens, so
every id the random weights can produce decodes."""


def build(out: str | Path) -> Path:
    """Write config, generation config and tokenizer into ``out`` (idempotent)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    out = Path(out)
    done = out / "tokenizer_config.json"
    if done.exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB, special_tokens=list(SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_corpus(), trainer=trainer)
    vocab = int(QWEN25_7B["vocab_size"])  # type: ignore[call-overload]
    pad = vocab - tok.get_vocab_size()
    tok.add_special_tokens([AddedToken(f"<|reserved_{i}|>", special=True) for i in range(pad)])
    if tok.get_vocab_size() != vocab:
        raise RuntimeError(f"tokenizer has {tok.get_vocab_size()} tokens, not {vocab}")
    tok.save(str(out / "tokenizer.json"))
    ids = {s: tok.token_to_id(s) for s in SPECIALS}
    config = {**QWEN25_7B, "bos_token_id": ids["<|endoftext|>"],
              "eos_token_id": ids["<|im_end|>"]}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"]}))
    tmp = out / "tokenizer_config.json.tmp"
    tmp.write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None,
        "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": None,
        "model_max_length": QWEN25_7B["max_position_embeddings"],
        "chat_template": CHAT_TEMPLATE}, indent=2))
    tmp.replace(done)  # written last: its presence means the folder is complete
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/real_size_model.py DIR")
    print(build(sys.argv[1]))
