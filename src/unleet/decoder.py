"""A trained model ready to decode text: what `evaluate`, `unleet decode` and `unleet.load` share."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import BatchEncoding, DynamicCache, EncoderDecoderCache, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import ModelOutput

from unleet import io, lineage, textmetrics
from unleet.errors import UnleetError
from unleet.inputs import InputFormat
from unleet.lexicon import WORD_EDGE, Normaliser, load_table
from unleet.modeling import load_trained

DEFAULT_MAX_SOURCE_LENGTH = 256


class Decoder:
    """Greedy or beam decoding in batches sorted by length (little padding), bf16 on CUDA.

    Each batch writes at most as many tokens as its longest source allows (`InputFormat.new_token_limit`).
    With `rerank`, the model's own output competes with the text returned unchanged and with the
    lexicon's reading, and the one the model gives the highest likelihood wins (`choose`): greedy
    search commits to a token early and cannot take it back, so a small model often rewrites a word
    it would itself rather have copied. `copy_bias` (nats per word of the input) adds to the
    unchanged text's score a prior that a word needs no change: training corrupts most words, real
    text leaves most alone, so the model's likelihoods undervalue copying. With `slang_bias`, a rival
    that rewrites only the words the lexicon lists as slang shares that prior (`picks`).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        max_source_length: int,
        input_format: InputFormat | None = None,
        rerank: bool = False,
        copy_bias: float = 0.0,
        slang_bias: float | None = None,
        num_beams: int = 1,
    ) -> None:
        if num_beams < 1:
            raise UnleetError(f"num_beams {num_beams}: must be at least 1")
        if copy_bias < 0:
            raise UnleetError(f"copy bias {copy_bias}: must be at least 0 (nats per word of the input)")
        if slang_bias is not None and slang_bias < 0:
            raise UnleetError(f"slang bias {slang_bias}: must be at least 0 (nats per slang word of the input)")
        self.model, self.tokenizer, self.max_source_length = model.eval(), tokenizer, max_source_length
        self.input_format = input_format or InputFormat()
        self.rerank, self.copy_bias, self.slang_bias = rerank, copy_bias, slang_bias
        self.num_beams = num_beams

    @torch.no_grad()
    def decode(
        self,
        texts: list[str],
        batch_size: int = 64,
        max_new_tokens: int = 256,
        num_beams: int | None = None,
        progress: bool = False,
    ) -> list[str]:
        """One single-line output per input, in input order; `num_beams` None: the decoder's own."""
        num_beams = self.num_beams if num_beams is None else num_beams
        sources = self.input_format.sources(texts)
        outputs = [""] * len(texts)
        for indices, batch in self._batches(sources, batch_size, "decode", progress):
            limit = self.input_format.new_token_limit(batch["input_ids"].shape[1], max_new_tokens)
            cache = {"cache": self._beam_cache()} if num_beams > 1 else {}
            with self._autocast():
                generated = self.model.generate(
                    **batch, max_new_tokens=limit, num_beams=num_beams, do_sample=False, **cache
                )
            decoded = self.tokenizer.batch_decode(generated, skip_special_tokens=True)
            for index, text in zip(indices, decoded, strict=True):
                outputs[index] = " ".join(text.split())
        return self._choose(texts, sources, outputs, batch_size, progress) if self.rerank else outputs

    def choose(self, texts: list[str], generated: list[str], batch_size: int = 64, progress: bool = False) -> list[str]:
        """For each text, whichever of `generated`, the text itself and the lexicon's reading the model
        finds most likely (summed log-probabilities of its tokens, the text itself raised by
        `copy_bias` per word); ties keep `generated`."""
        return self._choose(texts, self.input_format.sources(texts), generated, batch_size, progress)

    def rivals(self, texts: list[str], generated: list[str]) -> list[list[str]]:
        """What `choose` weighs, first wins ties: `generated`, the texts unchanged, the lexicon's readings."""
        lexicon = Normaliser()
        return [list(generated), list(texts), [lexicon(text) for text in texts]]

    @torch.no_grad()
    def likelihoods(
        self,
        texts: list[str],
        candidates: list[list[str]],
        batch_size: int = 64,
        progress: bool = False,
        sources: list[str] | None = None,
    ) -> torch.Tensor:
        """Summed log-probability of each candidate output for each text: shape (candidates, texts).

        One encoder pass per batch serves every candidate."""
        sources = self.input_format.sources(texts) if sources is None else sources
        scores = torch.zeros(len(candidates), len(texts))
        for indices, batch in self._batches(sources, batch_size, "rerank", progress):
            with self._autocast():
                encoded = self.model.get_encoder()(**batch)
                for row, outputs in enumerate(candidates):
                    scores[row, indices] = self._log_likelihood(batch, encoded, [outputs[i] for i in indices]).cpu()
        return scores

    def _choose(
        self, texts: list[str], sources: list[str], generated: list[str], batch_size: int, progress: bool
    ) -> list[str]:
        """`choose`, given the model's sources for `texts` (already built when called from `decode`)."""
        candidates = self.rivals(texts, generated)
        scores = self.likelihoods(texts, candidates, batch_size, progress, sources)
        best = picks(scores, candidates, self.copy_bias, self.slang_bias)
        return [candidates[pick][index] for index, pick in enumerate(best)]

    def _log_likelihood(self, batch: BatchEncoding, encoded: ModelOutput, outputs: list[str]) -> torch.Tensor:
        """Summed log-probability of each output's tokens, end of sequence included."""
        labels = self.tokenizer(
            text_target=outputs, return_tensors="pt", padding=True, truncation=True, max_length=self.max_source_length
        )["input_ids"].to(self.model.device)
        labels[labels == self.tokenizer.pad_token_id] = -100
        logits = self.model(encoder_outputs=encoded, attention_mask=batch["attention_mask"], labels=labels).logits
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        mask = labels != -100
        picked = log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return (picked * mask).sum(dim=-1)

    def _batches(
        self, sources: list[str], batch_size: int, description: str, progress: bool
    ) -> Iterator[tuple[list[int], BatchEncoding]]:
        """Tokenized batches of similar length (little padding), with the input positions they hold."""
        order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
        starts = range(0, len(order), batch_size)
        for start in tqdm(starts, desc=description, unit="batch", disable=not progress):
            indices = order[start : start + batch_size]
            batch = self.tokenizer(
                [sources[i] for i in indices],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_source_length,
            ).to(self.model.device)
            yield indices, batch

    def _beam_cache(self) -> EncoderDecoderCache:
        config = self.model.config.get_text_config(decoder=True)
        return BeamSharedCrossAttentionCache(DynamicCache(config=config), DynamicCache(config=config))

    def _autocast(self) -> torch.autocast:
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.model.device.type == "cuda")


class BeamSharedCrossAttentionCache(EncoderDecoderCache):
    """A decoding cache whose beam reordering leaves the cross-attention states in place.

    Beam search only ever reorders the beams of one input among themselves, and every beam of an
    input attends to the same encoder states, so copying those states at each step (what
    `EncoderDecoderCache` does, most of its `index_select` time on CPU) changes nothing.
    """

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.self_attention_cache.reorder_cache(beam_idx)


def picks(
    scores: torch.Tensor, candidates: list[list[str]], copy_bias: float, slang_bias: float | None = None
) -> list[int]:
    """Which of `Decoder.rivals` wins for each text, given their `likelihoods`; argmax keeps the first
    of equal scores (the model's).

    The unchanged text (`candidates[1]`) is raised by `copy_bias` per word of it. With `slang_bias`,
    a rival that rewrites only words the lexicon lists (`lol`, `gonna`, `OMG`) and keeps every other
    word in place is raised as much, less `slang_bias` per listed word of the text: without that, a
    long comment with one `lol` keeps it, because a prior on thirty words the rewrite keeps too
    outweighs what the model can say about the one it changes.
    """
    texts = candidates[1]
    words = torch.tensor([len(text.split()) for text in texts], dtype=scores.dtype)
    biased = scores.clone()
    biased[1] += copy_bias * words
    if slang_bias is not None:
        table = load_table()
        patterns = [slang_free_pattern(text, table) for text in texts]
        listed = torch.tensor([slang for _, slang in patterns], dtype=scores.dtype)
        shared = (copy_bias * words - slang_bias * listed).clamp(min=0)
        for row in (0, 2):  # the model's output, the lexicon's reading
            rivals = zip(patterns, candidates[row], strict=True)
            only_slang = [_matches(pattern, rival) for (pattern, _), rival in rivals]
            biased[row] += shared * torch.tensor(only_slang, dtype=scores.dtype)
    return biased.argmax(dim=0).tolist()


def rewrites_only_slang(text: str, rewrite: str, table: dict[str, str]) -> bool:
    """Whether `rewrite` keeps every word of `text` that `table` does not list, in order and in place,
    as accuracy compares words (case and the punctuation around them aside): only runs of listed
    words may become other words, or none."""
    return _matches(slang_free_pattern(text, table)[0], rewrite)


def slang_free_pattern(text: str, table: dict[str, str]) -> tuple[re.Pattern[str], int]:
    """What `rewrites_only_slang` matches a rewrite of `text` against, and how many of its words
    `table` lists: each unlisted word literally, each run of listed words as any words or none."""
    pattern, free, listed = [], False, 0
    for word in text.split():
        compared = textmetrics.normalise(word)
        is_listed = WORD_EDGE.match(word).group(2).lower() in table  # type: ignore[union-attr]
        listed += is_listed
        if not compared:
            continue
        if not is_listed:
            pattern.append(" " + re.escape(compared))
            free = False
        elif not free:
            pattern.append(r"(?: \S+)*")
            free = True
    return re.compile("".join(pattern)), listed


def _matches(pattern: re.Pattern[str], rewrite: str) -> bool:
    return pattern.fullmatch("".join(" " + word for word in textmetrics.normalise(rewrite).split())) is not None


def load(
    path: str | Path = "models/unleet",
    device: str | None = None,
    rerank: bool | None = None,
    copy_bias: float | None = None,
    slang_bias: float | None = None,
    num_beams: int | None = None,
) -> Decoder:
    """A model directory (full weights, merged LoRA, or a LoRA adapter over its base) as a Decoder.

    The source truncation length, the beams, and whether to rerank and with what copy and slang biases
    (unless `num_beams`, `rerank`, `copy_bias` and `slang_bias` say), come from the model's
    `lineage.json` when it has one: the model decodes as it was evaluated, since the biases were
    chosen on the answers of that many beams.
    """
    directory = Path(path)
    model, tokenizer = load_trained(directory)
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    length, evaluated = DEFAULT_MAX_SOURCE_LENGTH, {}
    if (directory / lineage.LINEAGE_FILE).is_file():
        params = lineage.read(directory)["params"]
        length, evaluated = params["tokenizer"]["max_source_length"], params["evaluate"]
    rerank = evaluated.get("rerank", False) if rerank is None else rerank
    copy_bias = evaluated.get("copy_bias", 0.0) if copy_bias is None else copy_bias
    slang_bias = evaluated.get("slang_bias") if slang_bias is None else slang_bias
    num_beams = evaluated.get("num_beams", 1) if num_beams is None else num_beams
    return Decoder(model, tokenizer, length, InputFormat.load(directory), rerank, copy_bias, slang_bias, num_beams)


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
