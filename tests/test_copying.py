"""The copy head (`model.copy`): a distribution mixed from the vocabulary and the source, and a model
that decodes, reranks, saves and loads like any other."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import ByT5Tokenizer, PegasusForConditionalGeneration

import unleet
from unleet.copying import CopyPegasusForConditionalGeneration
from unleet.modeling import build_model
from unleet.params import ModelParams

SHAPE = {"d_model": 32, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2}
TEXTS = ["gg wp m8", "upauly13771377"]


def copy_model(tokenizer: ByT5Tokenizer) -> CopyPegasusForConditionalGeneration:
    torch.manual_seed(0)
    model = build_model(ModelParams(preset="tiny", architecture="pegasus", dropout=0.0, copy=True, **SHAPE), tokenizer)
    assert isinstance(model, CopyPegasusForConditionalGeneration)
    return model.eval()


def set_gate(model: CopyPegasusForConditionalGeneration, bias: float) -> None:
    """Gate bias ±30: all generation (+) or all copying (-), whatever the states."""
    torch.nn.init.zeros_(model.copy_gate.weight)
    torch.nn.init.constant_(model.copy_gate.bias, bias)


def labelled(tokenizer: ByT5Tokenizer, texts: list[str], targets: list[str]) -> dict[str, torch.Tensor]:
    batch = tokenizer(texts, text_target=targets, padding=True, return_tensors="pt")
    batch["labels"][batch["labels"] == tokenizer.pad_token_id] = -100
    return dict(batch)


def test_copy_head_mixes_the_vocabulary_with_the_source_tokens() -> None:
    tokenizer = ByT5Tokenizer()
    model = copy_model(tokenizer)
    batch = labelled(tokenizer, TEXTS, ["good game", "x"])
    with torch.no_grad():
        mixed = model(**batch).logits.exp()
        assert torch.allclose(mixed.sum(dim=-1), torch.ones(mixed.shape[:2]), atol=1e-5)

        set_gate(model, 30.0)
        plain = PegasusForConditionalGeneration.forward(model, **batch).logits.log_softmax(dim=-1)
        assert torch.allclose(model(**batch).logits, plain, atol=1e-4)

        set_gate(model, -30.0)
        copied = model(**batch).logits.exp()
    for row, source in enumerate(batch["input_ids"]):
        outside = torch.ones(copied.shape[-1], dtype=torch.bool)
        outside[source[batch["attention_mask"][row].bool()]] = False
        assert copied[row][:, outside].max() < 1e-6  # nothing but the row's own source tokens
        assert copied[row][:, ~outside].sum(dim=-1).min() > 0.999


def test_training_loss_at_the_labels_alone_equals_the_full_mixtures() -> None:
    """Training computes the mixture at the labels only; its loss and gradients are those of the
    cross-entropy on the whole mixture that evaluation and decoding read."""
    tokenizer = ByT5Tokenizer()
    model = copy_model(tokenizer)
    torch.nn.init.normal_(model.copy_gate.weight, std=0.5)  # a gate that differs by position
    batch = labelled(tokenizer, TEXTS, ["good game mate", "up"])
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    mixture = model(**batch).logits
    full = torch.nn.functional.nll_loss(mixture.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)
    full_gradients = torch.autograd.grad(full, trainable, allow_unused=True)

    trained = model.train()(**batch)
    assert trained.logits is None
    assert torch.allclose(trained.loss, full, atol=1e-6)
    gradients = torch.autograd.grad(trained.loss, trainable, allow_unused=True)
    for expected, got in zip(full_gradients, gradients, strict=True):
        assert (expected is None) == (got is None)
        assert expected is None or torch.allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_a_row_of_one_attended_pad_trains_without_nans() -> None:
    """The collator tops up a bucket with such rows; a fully masked copy attention turned them into NaNs."""
    tokenizer = ByT5Tokenizer()
    model = copy_model(tokenizer).train()
    batch = labelled(tokenizer, ["gg wp", "x"], ["good game", "x"])
    batch["input_ids"][1] = tokenizer.pad_token_id
    batch["attention_mask"][1] = 0
    batch["attention_mask"][1, 0] = 1
    batch["labels"][1] = -100
    loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(parameter.grad).all() for parameter in model.parameters() if parameter.grad is not None)


def test_a_copy_model_decodes_reranks_and_loads_from_its_directory(tmp_path: Path) -> None:
    """Decoding steps see only the encoder's output, which carries the source ids: a closed gate writes
    nothing but source bytes, greedy and with beams, and rescoring through the encoder's output gives
    the likelihoods of a direct forward pass."""
    tokenizer = ByT5Tokenizer()
    model = copy_model(tokenizer)
    set_gate(model, -30.0)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)

    decoder = unleet.load(tmp_path, device="cpu", rerank=False)
    assert isinstance(decoder.model, CopyPegasusForConditionalGeneration)
    for beams in (1, 3):
        outputs = decoder.decode(TEXTS, max_new_tokens=12, num_beams=beams)
        assert all(output and set(output) <= set(text) for output, text in zip(outputs, TEXTS, strict=True))

    scores = decoder.likelihoods(TEXTS, [outputs])
    batch = labelled(tokenizer, TEXTS, outputs)
    with torch.no_grad():
        log_probs = decoder.model(**batch).logits
    mask = batch["labels"] != -100
    direct = (log_probs.gather(-1, batch["labels"].clamp(min=0)[..., None])[..., 0] * mask).sum(dim=-1)
    assert torch.allclose(scores[0], direct, atol=1e-4)
