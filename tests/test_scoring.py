"""Label scoring gives the same scores however it is batched, in ONNX Runtime GenAI and in PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from slmtune.config import compose
from slmtune.scoring import OnnxGenaiClassifier, load_classifier, shared_prefix_length

EVAL = {"batch_size": compose().eval.batch_size, "max_new_tokens": compose().eval.max_new_tokens}  # conf/eval/
PHRASES = [
    "I can't stop crying since she left.",
    "Whoa, I never expected that ending!",
    "Something is scratching at the window",
    "We won the cup!",
    "ok",
]


def onnx_scores(folder, **options) -> np.ndarray:
    classifier = load_classifier(folder, **EVAL)
    scorer = OnnxGenaiClassifier(folder, classifier.task, **{**EVAL, **options})
    return scorer.label_scores(scorer.prompts(PHRASES))


@pytest.mark.slow
def test_onnx_scores_are_the_same_batched_cached_and_one_at_a_time(pipeline_run):
    folder = pipeline_run / "models/int4"
    cached = onnx_scores(folder, batched=False)
    batched = onnx_scores(folder, batched=True, batch_size=32)
    one_row_at_a_time = onnx_scores(folder, batched=True, batch_size=1)
    classifier = load_classifier(folder, **EVAL)
    one_prompt_at_a_time = np.concatenate([classifier.label_scores(classifier.prompts([p])) for p in PHRASES])
    assert cached.shape == (len(PHRASES), 4)
    assert np.all(cached < 0)
    np.testing.assert_allclose(batched, cached, atol=1e-4)
    np.testing.assert_allclose(one_row_at_a_time, cached, atol=1e-4)
    np.testing.assert_allclose(one_prompt_at_a_time, cached, atol=1e-4)


@pytest.mark.slow
def test_onnx_label_scores_are_log_probabilities_of_the_completions(pipeline_run):
    """exp(score) summed over the labels is at most 1: each is the probability of one completion."""
    scores = onnx_scores(pipeline_run / "models/int4", batched=True)
    assert np.all(np.exp(scores).sum(axis=1) <= 1 + 1e-6)


@pytest.mark.slow
def test_torch_scores_do_not_depend_on_the_batch_size(pipeline_run):
    folder = pipeline_run / "models/merged"
    whole = load_classifier(folder, **{**EVAL, "batch_size": 32})
    rows = load_classifier(folder, **{**EVAL, "batch_size": 1})
    np.testing.assert_allclose(
        whole.label_scores(whole.prompts(PHRASES)), rows.label_scores(rows.prompts(PHRASES)), atol=1e-4
    )


def test_shared_prefix_leaves_a_token_of_each_sequence_to_process():
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2
    assert shared_prefix_length([[1, 2, 3]]) == 0
    assert shared_prefix_length([[7, 2], [1, 2]]) == 0


@pytest.mark.slow
@pytest.mark.parametrize("adapter", [False, True])
def test_torch_scores_from_the_prompt_cache_equal_scoring_each_sequence_alone(pipeline_run, adapter):
    """Prompt once, then every label from its cache: the same as a forward pass over each prompt+label alone."""
    import torch

    from slmtune.scoring import completion_logprobs, labelled_sequences

    models = pipeline_run / "models"
    if adapter:
        classifier = load_classifier(models / "base", adapter=models / "adapter", **EVAL)
    else:
        classifier = load_classifier(models / "merged", **EVAL)
    prompts = classifier.prompts(PHRASES)
    alone = []
    for ids, start in labelled_sequences([classifier._ids(p) for p in prompts], classifier._completion_ids):
        with torch.no_grad():
            logits = classifier.model(input_ids=torch.tensor([ids])).logits.float().numpy()
        alone.append(completion_logprobs(logits, [(ids, start)])[0])
    expected = np.array(alone).reshape(len(PHRASES), -1)
    np.testing.assert_allclose(classifier.label_scores(prompts), expected, atol=1e-4)
