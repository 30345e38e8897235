"""The embedded default: a tiny Phi-3 and a byte-level BPE tokenizer, built deterministically."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from slmtune.config import ModelConfig, TinyArchitecture
from slmtune.environment import import_without_collector

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
    import_without_collector("transformers.modeling_utils")
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


def pretrain_tiny_base(folder: Path, rows: list[dict], epochs: int, learning_rate: float, seed: int) -> float:
    """Train the tiny base in `folder` as a causal language model on the training split's rows; its final loss.

    Each prompt is followed by *another* row's completion (a seeded shuffle), so the base learns the
    words, the chat format and the shape of an answer, not which answer goes with which prompt: its
    own accuracy stays at chance, and LoRA alone can then learn the task, as on a real pretrained
    model (the embedded default otherwise trains its embeddings and head, `model.modules_to_save`).
    """
    import random

    import torch
    from transformers import get_cosine_schedule_with_warmup

    from slmtune.models import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(folder)
    completions = [row["completion"] for row in rows]
    random.Random(seed).shuffle(completions)
    sequences = [
        tokenizer(row["prompt"] + completion, add_special_tokens=False)["input_ids"]
        for row, completion in zip(rows, completions, strict=True)
    ]
    torch.manual_seed(seed)
    model = load_causal_lm(folder)
    model.train()
    batch_size = 32
    steps_per_epoch = -(-len(sequences) // batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    schedule = get_cosine_schedule_with_warmup(optimizer, steps_per_epoch // 2, steps_per_epoch * epochs)
    order = torch.Generator().manual_seed(seed)
    loss_sum = 0.0
    for _ in range(epochs):
        loss_sum = 0.0
        shuffled = torch.randperm(len(sequences), generator=order).tolist()
        for start in range(0, len(sequences), batch_size):
            batch = [sequences[i] for i in shuffled[start : start + batch_size]]
            loss = model(**_padded(batch, tokenizer.pad_token_id)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            loss_sum += loss.item()
    model.save_pretrained(folder, safe_serialization=True)
    return loss_sum / steps_per_epoch


def _padded(batch: list[list[int]], pad: int) -> dict:
    """input_ids, attention_mask and labels (-100 on padding) of right-padded rows."""
    import torch

    width = max(map(len, batch))
    ids = torch.full((len(batch), width), pad)
    labels = torch.full((len(batch), width), -100)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, tokens in enumerate(batch):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        labels[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
