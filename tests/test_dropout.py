"""The CPU's LoRA dropout: torch's drop rate and scaling, seeded by torch's generator, in peft's layers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from slmtune.dropout import BitMaskDropout, use_bitmask_dropout

ELEMENTS = 1 << 20


def test_it_drops_the_fraction_p_and_scales_the_rest_as_torch_does():
    torch.manual_seed(0)
    x = torch.ones(ELEMENTS)
    out = BitMaskDropout(0.05)(x)
    dropped = float((out == 0).float().mean())
    assert abs(dropped - 0.05) < 4 * math.sqrt(0.05 * 0.95 / ELEMENTS)  # four standard deviations
    assert torch.allclose(out[out != 0], torch.full_like(out[out != 0], 1 / (1 - 3277 / 65536)))
    torch_out = nn.functional.dropout(x, 0.05, training=True)
    assert float(out.mean()) == pytest.approx(1.0, abs=2e-3)
    assert float(torch_out.mean()) == pytest.approx(1.0, abs=2e-3)


def test_each_of_the_four_lanes_of_a_draw_drops_independently():
    torch.manual_seed(1)
    out = BitMaskDropout(0.5)(torch.ones(ELEMENTS)).view(-1, 4) == 0
    for lane in range(4):
        assert abs(float(out[:, lane].float().mean()) - 0.5) < 4 * math.sqrt(0.25 / (ELEMENTS / 4))
    both = float((out[:, 0] & out[:, 1]).float().mean())
    assert abs(both - 0.25) < 4 * math.sqrt(0.25 * 0.75 / (ELEMENTS / 4))


def test_the_mask_follows_torch_seed_and_the_gradient_is_the_mask():
    dropout = BitMaskDropout(0.1)
    torch.manual_seed(7)
    first = dropout(torch.ones(3, 5, 7))
    torch.manual_seed(7)
    x = torch.ones(3, 5, 7, requires_grad=True)
    second = dropout(x)
    assert torch.equal(first, second)
    assert not torch.equal(second, dropout(torch.ones(3, 5, 7)))
    second.sum().backward()
    assert torch.equal(x.grad, second.detach())


def test_it_is_the_identity_in_eval_mode_and_at_p_zero():
    x = torch.randn(4, 9)
    assert BitMaskDropout(0.0)(x) is x
    assert BitMaskDropout(0.3).eval()(x) is x
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        BitMaskDropout(1.0)


def test_peft_lora_layers_get_it_and_still_train():
    from peft import LoraConfig, get_peft_model
    from transformers import Phi3Config, Phi3ForCausalLM

    config = Phi3Config(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, pad_token_id=0
    )
    torch.manual_seed(0)
    targets = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    model = get_peft_model(
        Phi3ForCausalLM(config), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.05, target_modules=targets)
    )
    assert use_bitmask_dropout(model) == len(targets) * config.num_hidden_layers
    assert sum(isinstance(module, BitMaskDropout) for module in model.modules()) == 8
    assert not any(isinstance(module, nn.Dropout) and module.p > 0 for module in model.modules())
    ids = torch.randint(1, 64, (2, 11))
    model.train()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    lora_grads = [p.grad for name, p in model.named_parameters() if "lora_" in name]
    assert lora_grads and all(grad is not None for grad in lora_grads)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)
