"""The embedded default: a tiny Phi-3 and a byte-level BPE tokenizer, built deterministically."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from slmtune.config import ModelConfig, TinyArchitecture

END_OF_TEXT = "<|endoftext|>"
END_OF_TURN = "<|end|>"
CHAT_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]


def train_tokenizer(texts: Iterable[str], vocab_size: int, chat_template: str | None):
    """Train a byte-level BPE on `texts`; saved as a GPT2Tokenizer, which ONNX Runtime GenAI reads alike."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2TokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    special = [END_OF_TEXT, END_OF_TURN, *CHAT_TOKENS]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(sorted(texts), trainer=trainer)
    hf_tokenizer = GPT2TokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TURN,
        unk_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
        additional_special_tokens=CHAT_TOKENS,
        add_prefix_space=False,
        model_max_length=4096,
    )
    if chat_template:
        hf_tokenizer.chat_template = chat_template
    return hf_tokenizer


def random_phi3(arch: TinyArchitecture, vocab_size: int, seed: int, device: str = "cpu", dtype: str = "float32"):
    """A Phi3ForCausalLM of shape `arch` with `vocab_size` rows, randomly initialised from `seed` on `device`.

    Token ids 0 and 1 are the tokenizer's end-of-text and end-of-turn (`train_tokenizer` puts them first).
    """
    import torch
    from transformers import GenerationConfig, Phi3Config, Phi3ForCausalLM

    from slmtune.models import torch_dtype

    special = {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 0}
    config = Phi3Config(
        vocab_size=vocab_size,
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_hidden_layers,
        num_attention_heads=arch.num_attention_heads,
        num_key_value_heads=arch.num_key_value_heads,
        max_position_embeddings=arch.max_position_embeddings,
        original_max_position_embeddings=arch.max_position_embeddings,
        sliding_window=None,
        tie_word_embeddings=False,
        architectures=["Phi3ForCausalLM"],
        **special,
    )
    torch.manual_seed(seed)
    with torch.device(device):
        model = Phi3ForCausalLM(config).to(torch_dtype(dtype))
    model.generation_config = GenerationConfig(**special)
    return model


def write_tiny_base(model_cfg: ModelConfig, texts: Iterable[str], seed: int, out_dir: Path) -> None:
    """Train the tokenizer, build the model, save both (safetensors) into `out_dir`."""
    tokenizer = train_tokenizer(texts, model_cfg.tiny.vocab_size, model_cfg.chat_template)
    model = random_phi3(model_cfg.tiny, len(tokenizer), seed)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
