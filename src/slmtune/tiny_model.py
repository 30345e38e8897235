"""The embedded default: a tiny Phi-3 and a byte-level BPE tokenizer, built deterministically."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from slmtune.config import ModelConfig

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


def build_tiny_phi3(model_cfg: ModelConfig, tokenizer, seed: int):
    """A randomly initialised Phi3ForCausalLM whose shape comes from `model.tiny`."""
    import torch
    from transformers import GenerationConfig, Phi3Config, Phi3ForCausalLM

    arch = model_cfg.tiny
    config = Phi3Config(
        vocab_size=len(tokenizer),
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_hidden_layers,
        num_attention_heads=arch.num_attention_heads,
        num_key_value_heads=arch.num_key_value_heads,
        max_position_embeddings=arch.max_position_embeddings,
        original_max_position_embeddings=arch.max_position_embeddings,
        sliding_window=None,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        architectures=["Phi3ForCausalLM"],
    )
    torch.manual_seed(seed)
    model = Phi3ForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return model


def write_tiny_base(model_cfg: ModelConfig, texts: Iterable[str], seed: int, out_dir: Path) -> None:
    """Train the tokenizer, build the model, save both (safetensors) into `out_dir`."""
    tokenizer = train_tokenizer(texts, model_cfg.tiny.vocab_size, model_cfg.chat_template)
    model = build_tiny_phi3(model_cfg, tokenizer, seed)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
