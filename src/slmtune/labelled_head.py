"""trl's fused LM head, scoring only the positions that carry a label, on every device.

trl's SFTTrainer patches the model's forward so that the loss never builds the full logits: its
chunked kernel scores positions tile by tile. On CUDA it scores only the positions whose label is
not -100; elsewhere (the CPU) it scores every position, prompt and padding included, to keep tile
shapes fixed for compilers. With completion-only loss that is most of the head's work thrown away:
a tone is 2-3 tokens of a 47-token row, and on the tiny default the head took 45% of each step.

`score_labelled_positions` wraps trl's patched forward so that the CPU does what trl does on CUDA,
with trl's own kernel and outputs; the loss, entropy and token accuracy are the same figures.
"""

from __future__ import annotations

from typing import Any

# Devices where trl already scores only the labelled positions (its Triton path).
TRITON_DEVICES = ("cuda", "xpu")
# What SFTTrainer asks its fused head for: the log-probabilities, and entropy and top-1 hits for its metrics.
OUTPUTS = ("log_probs", "entropy", "is_top1")
VOCAB_CHUNK = 32768  # vocabulary columns per tile, as trl's own fused head uses
# Config keys that change the logits before the softmax; models with any of them keep trl's path.
SCALED_LOGITS = (
    "final_logit_softcapping",
    "logit_scale",
    "output_multiplier",
    "lm_head_multiplier",
    "logits_scaling",
    "output_router_logits",
)


def score_labelled_positions(model) -> bool:
    """Wrap trl's fused forward of `model` (a peft or plain causal LM); False where trl's path is kept."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config.get_text_config()
    if any(getattr(config, key, None) for key in SCALED_LOGITS):
        return False
    import types

    fused_forward = base.forward  # trl's patched forward (SFTTrainer installs it)

    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None, **kwargs):
        if not fused_lm_head or shift_labels is not None or labels.device.type in TRITON_DEVICES:
            return fused_forward(
                *args,
                fused_lm_head=fused_lm_head,
                labels=labels,
                shift_labels=shift_labels,
                num_items_in_batch=num_items_in_batch,
                **kwargs,
            )
        return _labelled_forward(self, args, kwargs, labels, num_items_in_batch)

    base.forward = types.MethodType(forward, base)
    return True


def _labelled_forward(model, args: tuple, kwargs: dict[str, Any], labels, num_items_in_batch):
    """The backbone, then trl's kernel over the labelled positions only; the output trl's own head returns."""
    from trl.kernels import ChunkedLogProbFunction
    from trl.trainer.utils import FusedCausalLMOutput

    kwargs["use_cache"] = False
    hidden = model.base_model(*args, **kwargs).last_hidden_state[:, :-1]
    labels = labels[:, 1:]
    mask = labels != -100
    head = model.get_output_embeddings()
    scored = ChunkedLogProbFunction.apply(
        hidden[mask], head.weight, head.bias, labels[mask], 1.0, VOCAB_CHUNK, None, 1.0, OUTPUTS
    )
    # Back to (batch, seq_len - 1), zero off the labels; masked_scatter keeps an all-masked batch differentiable.
    log_probs, entropy, _, _, is_top1 = (
        None if x is None else x.new_zeros(mask.shape).masked_scatter(mask, x) for x in scored
    )
    count = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
    return FusedCausalLMOutput(
        loss=-log_probs.sum() / count, log_probs=log_probs, entropy=entropy, is_top1=is_top1, label_mask=mask
    )
