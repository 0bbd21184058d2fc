"""A trained model ready to decode text: what `evaluate`, `unleet decode` and `unleet.load` share."""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from unleet import io, lineage
from unleet.errors import UnleetError
from unleet.inputs import InputFormat
from unleet.modeling import load_trained

DEFAULT_MAX_SOURCE_LENGTH = 256


class Decoder:
    """Greedy or beam decoding in batches sorted by length (little padding), bf16 on CUDA.

    Each batch writes at most as many tokens as its longest source allows (`InputFormat.new_token_limit`).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        max_source_length: int,
        input_format: InputFormat | None = None,
    ) -> None:
        self.model, self.tokenizer, self.max_source_length = model.eval(), tokenizer, max_source_length
        self.input_format = input_format or InputFormat()

    @torch.no_grad()
    def decode(
        self,
        texts: list[str],
        batch_size: int = 64,
        max_new_tokens: int = 256,
        num_beams: int = 1,
        progress: bool = False,
    ) -> list[str]:
        """One single-line output per input, in input order."""
        texts = self.input_format.sources(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        outputs = [""] * len(texts)
        device = self.model.device
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
        starts = range(0, len(order), batch_size)
        for start in tqdm(starts, desc="decode", unit="batch", disable=not progress):
            indices = order[start : start + batch_size]
            batch = self.tokenizer(
                [texts[i] for i in indices],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_source_length,
            ).to(device)
            limit = self.input_format.new_token_limit(batch["input_ids"].shape[1], max_new_tokens)
            with autocast:
                generated = self.model.generate(**batch, max_new_tokens=limit, num_beams=num_beams, do_sample=False)
            decoded = self.tokenizer.batch_decode(generated, skip_special_tokens=True)
            for index, text in zip(indices, decoded, strict=True):
                outputs[index] = " ".join(text.split())
        return outputs


def load(path: str | Path = "models/unleet", device: str | None = None) -> Decoder:
    """A model directory (full weights, merged LoRA, or a LoRA adapter over its base) as a Decoder.

    The source truncation length comes from the model's `lineage.json` when it has one.
    """
    directory = Path(path)
    model, tokenizer = load_trained(directory)
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    length = DEFAULT_MAX_SOURCE_LENGTH
    if (directory / lineage.LINEAGE_FILE).is_file():
        length = lineage.read(directory)["params"]["tokenizer"]["max_source_length"]
    return Decoder(model, tokenizer, length, InputFormat.load(directory))


def input_lines(data: bytes, name: str) -> list[str]:
    """Lines of a file or stdin to decode, refusing empty input and naming the first non-UTF-8 line."""
    texts = [text for _, text in io.numbered_lines(data.splitlines(), name)]
    if not any(text.strip() for text in texts):
        raise UnleetError(f"{name}: empty, nothing to decode")
    return texts


def decode_lines(decoder: Decoder, texts: list[str], **options: int) -> list[str]:
    """Decode every non-blank line; a blank line stays blank, so output lines match input lines."""
    filled = [i for i, text in enumerate(texts) if text.strip()]
    outputs = [""] * len(texts)
    for index, output in zip(filled, decoder.decode([texts[i] for i in filled], **options), strict=True):
        outputs[index] = output
    return outputs
