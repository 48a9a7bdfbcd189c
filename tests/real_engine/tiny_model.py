"""A tiny random-weight chat model for tests and benchmarks against the real vLLM engine.

No weights can be downloaded in CI, so the model is built on the spot: a Qwen2ForCausalLM
``config.json`` (2 layers, hidden size 128) and a byte-level BPE tokenizer trained with the
``tokenizers`` library on local text (the Python standard library's own sources), with the
``<|im_start|>``/``<|im_end|>`` specials and a chat template. vLLM loads it with
``load_format="dummy"`` (random weights), so its answers mean nothing: tests check the
bookkeeping (every item answered, answers valid against the schema), never accuracy.

``python -m tests.real_engine.tiny_model DIR`` builds it into DIR.
"""

from __future__ import annotations

import json
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

VOCAB_SIZE = 2048
"""Tokenizer vocabulary (the model's embedding table has exactly this many rows)."""

SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CONFIG = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 64,
    "hidden_act": "silu",
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "use_sliding_window": False,
    "vocab_size": VOCAB_SIZE,
    "bos_token_id": 0,
    "eos_token_id": 2,
}


def _corpus(max_files: int = 120) -> Iterator[str]:
    """Text to train the tokenizer on: the standard library's Python sources (sorted, so the
    tokenizer is the same on every run of one Python version)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.glob("*.py"))[:max_files]:
        try:
            yield path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue


def build(out: str | Path) -> Path:
    """Write the tiny model (config, tokenizer, chat template) into ``out``; returns it.

    Idempotent: a directory that already holds a complete model is returned as it is.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    out = Path(out)
    done = out / "tokenizer_config.json"
    if done.exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=list(SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_corpus(), trainer=trainer)
    if tok.get_vocab_size() > VOCAB_SIZE:
        raise RuntimeError(f"tokenizer has {tok.get_vocab_size()} tokens, more than "
                           f"{VOCAB_SIZE}")
    tok.save(str(out / "tokenizer.json"))
    ids = {s: tok.token_to_id(s) for s in SPECIALS}
    config = {**CONFIG, "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"]}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"]}))
    tmp = out / "tokenizer_config.json.tmp"
    tmp.write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "model_max_length": CONFIG["max_position_embeddings"],
        "chat_template": CHAT_TEMPLATE,
    }, indent=2))
    tmp.replace(done)  # written last: its presence means the model is complete
    return out


def build_reward(out: str | Path, num_labels: int = 2) -> Path:
    """The same tiny model as a reward model: ``Qwen2ForSequenceClassification`` with
    ``num_labels`` output heads (vLLM's pooling runner; dummy weights as well)."""
    out = build(out)
    config = json.loads((out / "config.json").read_text())
    config.update(architectures=["Qwen2ForSequenceClassification"], num_labels=num_labels,
                  id2label={str(i): f"head{i}" for i in range(num_labels)},
                  label2id={f"head{i}": i for i in range(num_labels)})
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.real_engine.tiny_model DIR")
    print(build(sys.argv[1]))
