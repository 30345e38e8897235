"""Merge a LoRA adapter into its base model and check that nothing changed on the way."""

from __future__ import annotations

from pathlib import Path

from slmtune.errors import VerificationError

CHECK_TOLERANCE = 1e-3


def _logits(model, tokenizer, prompts: list[str]):
    import torch

    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**batch).logits.float()


def merge_adapter(
    base_dir: Path,
    adapter_dir: Path,
    out_dir: Path,
    instruction: str,
    check_phrases: list[str],
    trust_remote_code: bool = False,
) -> float:
    """Merge in full precision, save safetensors and tokenizer; return max |logit difference|.

    The check compares logits on `check_phrases` rendered with the chat template and `instruction`.
    """
    from slmtune.models import load_adapter, load_causal_lm, load_tokenizer
    from slmtune.prompts import render_prompt

    tokenizer = load_tokenizer(base_dir, trust_remote_code)
    check_prompts = [render_prompt(tokenizer, instruction, phrase) for phrase in check_phrases]
    base = load_causal_lm(base_dir, None, trust_remote_code)  # float32: never merge into low precision
    adapted = load_adapter(base, adapter_dir, base_dir)
    expected = _logits(adapted, tokenizer, check_prompts)
    merged = adapted.merge_and_unload().eval()
    actual = _logits(merged, tokenizer, check_prompts)
    difference = float((expected - actual).abs().max())
    scale = float(expected.abs().max()) or 1.0
    if difference > CHECK_TOLERANCE * max(1.0, scale):
        raise VerificationError(
            f"merged model's logits differ from base+adapter by {difference:.3g} "
            f"(tolerance {CHECK_TOLERANCE * max(1.0, scale):.3g}); the merge is wrong"
        )
    merged.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    return difference
