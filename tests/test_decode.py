"""`unleet decode` through the real CLI (arguments, stdin, a file, beams, bad input) and `unleet.load`."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import ByT5Tokenizer, DynamicCache, T5ForConditionalGeneration

import unleet
from unleet.decoder import BeamSharedCrossAttentionCache, Decoder, picks, rewrites_only_slang
from unleet.inputs import DECODE_SLACK, InputFormat
from unleet.lexicon import load_table
from unleet.modeling import build_model
from unleet.params import ModelParams

from .conftest import save_tiny_t5, tool_environment

DECODE = [sys.executable, "-m", "unleet.cli", "decode", "--max-new-tokens", "48"]
KNOWN = {"idk tbh": "I don't know, honestly.", "gg wp": "Good game, well played."}


def memorise(pairs: dict[str, str], directory: Path) -> Path:
    """A tiny byte-level T5 trained until greedy decoding gives every target: known inputs, known outputs.

    At 1e-3 the loss falls steadily on every machine tried; at 3e-3, on a Xeon, it stalled at
    `Good game, wel played.` (one `l` short) for all 1,500 steps."""
    tokenizer = ByT5Tokenizer()
    model = T5ForConditionalGeneration.from_pretrained(save_tiny_t5(directory, len(tokenizer)), dropout_rate=0.0)
    batch = tokenizer(list(pairs), text_target=list(pairs.values()), padding=True, return_tensors="pt")
    batch["labels"][batch["labels"] == tokenizer.pad_token_id] = -100
    inputs = tokenizer(list(pairs), return_tensors="pt", padding=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for step in range(1, 1501):
        model.train()
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 25:
            continue
        model.eval()
        with torch.no_grad():
            outputs = model.generate(**inputs, max_new_tokens=48, do_sample=False)
        if tokenizer.batch_decode(outputs, skip_special_tokens=True) == list(pairs.values()):
            break
    else:
        pytest.fail("the tiny model did not memorise its pairs")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return memorise(KNOWN, tmp_path_factory.mktemp("model"))


def decode(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*DECODE, *args], input=stdin, env=tool_environment(), capture_output=True, timeout=300)


def test_arguments_stdin_and_file_give_one_line_per_input(model_dir: Path, tmp_path: Path) -> None:
    expected = list(KNOWN.values())
    assert unleet.load(model_dir).decode(list(KNOWN), max_new_tokens=48) == expected

    result = decode("--model", str(model_dir), "idk tbh")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines() == expected[:1]

    result = decode("--model", str(model_dir), stdin=b"idk tbh\n\ngg wp\n")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines() == [expected[0], "", expected[1]]  # a blank line stays blank

    inputs = tmp_path / "inputs.txt"
    inputs.write_text("gg wp\nidk tbh")  # no final newline
    result = decode("--model", str(model_dir), "--file", str(inputs))
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines() == expected[::-1]


def test_beams_change_the_search(tmp_path: Path) -> None:
    """On an untrained model beam search finds other outputs than greedy; `--num-beams` must reach generate."""
    tokenizer = ByT5Tokenizer()
    directory = save_tiny_t5(tmp_path / "random", len(tokenizer))
    tokenizer.save_pretrained(directory)
    model = T5ForConditionalGeneration.from_pretrained(directory).eval()

    def search(text: str, beams: int) -> str:
        with torch.no_grad():
            output = model.generate(**tokenizer([text], return_tensors="pt"), max_new_tokens=8, num_beams=beams)
        return " ".join(tokenizer.decode(output[0], skip_special_tokens=True).split())

    candidates = [f"sample {i} of the random search" for i in range(40)]
    text = next((text for text in candidates if search(text, 4) != search(text, 1)), None)
    assert text is not None, "beam search never differed from greedy on an untrained model"
    decoder = unleet.load(directory)
    assert decoder.decode([text], max_new_tokens=8, num_beams=4) == [search(text, 4)]
    assert decoder.decode([text], max_new_tokens=8) == [search(text, 1)]
    command = [*DECODE[:4], "--max-new-tokens", "8", "--num-beams", "4", "--model", str(directory), text]
    result = subprocess.run(command, env=tool_environment(), capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines() == [search(text, 4)]


@pytest.mark.parametrize("copy", [False, True], ids=["t5", "pegasus-copy-head"])
def test_beams_that_share_cross_attention_states_search_exactly_as_transformers_does(
    copy: bool, model_dir: Path
) -> None:
    """Leaving the encoder's states in place when beams are reordered changes no beam and no score:
    the inputs give different outputs, so a beam reading another input's states or another beam's
    history would change them."""
    tokenizer = ByT5Tokenizer()
    if copy:
        torch.manual_seed(0)
        shape = {"d_model": 32, "d_ff": 64, "num_layers": 2, "num_decoder_layers": 2, "num_heads": 2}
        params = ModelParams(preset="tiny", architecture="pegasus", dropout=0.0, copy=True, **shape)
        model = build_model(params, tokenizer)
    else:
        model = T5ForConditionalGeneration.from_pretrained(model_dir).eval()
    texts = ["gg wp", "idk tbh", "upauly13771377 c u l8r"]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    settings = {"max_new_tokens": 24, "num_beams": 4, "do_sample": False, "return_dict_in_generate": True}
    config = model.config.get_text_config(decoder=True)
    with torch.no_grad():
        reference = model.generate(**batch, **settings, output_scores=True)
        cache = BeamSharedCrossAttentionCache(DynamicCache(config=config), DynamicCache(config=config))
        shared = model.generate(**batch, **settings, output_scores=True, cache=cache)
    assert torch.equal(shared.sequences, reference.sequences)
    assert torch.allclose(shared.sequences_scores, reference.sequences_scores)
    assert len({tuple(row) for row in reference.sequences.tolist()}) == len(texts)

    decoder = Decoder(model, tokenizer, 64, num_beams=4)
    written = tokenizer.batch_decode(reference.sequences, skip_special_tokens=True)
    expected = [" ".join(text.split()) for text in written]
    assert decoder.decode(texts, max_new_tokens=24) == expected


def test_a_model_that_never_stops_writes_in_proportion_to_its_input(tmp_path: Path) -> None:
    """A model that always writes "a" and never </s> runs to max_new_tokens, unless the training ratio caps it."""
    tokenizer = ByT5Tokenizer()
    shape = {"d_model": 32, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2}
    model = build_model(ModelParams(preset="tiny", architecture="pegasus", dropout=0.0, **shape), tokenizer)
    model.generation_config.forced_eos_token_id = None
    model.final_logits_bias[0, tokenizer("a").input_ids[0]] = 1e4
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    text = "gg wp"  # five bytes and </s>

    assert unleet.load(tmp_path).decode([text], max_new_tokens=200) == ["a" * 200]
    InputFormat(max_target_ratio=1.5).save(tmp_path)
    assert unleet.load(tmp_path).decode([text], max_new_tokens=200) == ["a" * (math.ceil(1.5 * 6) + DECODE_SLACK)]


def test_rerank_keeps_whichever_output_the_model_finds_most_likely(model_dir: Path) -> None:
    """The model's memorised answer beats a rival; the lexicon's reading (here the memorised answer)
    beats nonsense and an output cut short by the token limit, through `decode` and the CLI."""
    decoder = unleet.load(model_dir)
    assert not decoder.rerank  # no lineage: decode as generated
    own = decoder.decode(list(KNOWN), max_new_tokens=48)
    assert decoder.choose(list(KNOWN), own) == own
    assert decoder.choose(["gg wp"], ["Bad game."]) == [KNOWN["gg wp"]]

    def log_likelihood(text: str, output: str) -> float:
        """What `choose` ranks by, from the model's own loss (a mean over the output's tokens)."""
        batch = decoder.tokenizer([text], text_target=[output], return_tensors="pt")
        with torch.no_grad():
            return -decoder.model(**batch).loss.item() * batch["labels"].shape[1]

    cut_short = decoder.decode(["gg wp"], max_new_tokens=5)
    assert cut_short == ["Good"]
    assert log_likelihood("gg wp", KNOWN["gg wp"]) > max(log_likelihood("gg wp", text) for text in ("Good", "gg wp"))
    assert unleet.load(model_dir, rerank=True).decode(["gg wp"], max_new_tokens=5) == [KNOWN["gg wp"]]
    for flag, expected in (("--rerank", KNOWN["gg wp"]), ("--no-rerank", "Good")):
        result = decode("--model", str(model_dir), "--max-new-tokens", "5", flag, "gg wp")
        assert result.returncode == 0, result.stderr.decode()
        assert result.stdout.decode().splitlines() == [expected]


def test_decode_takes_its_beams_from_the_decoder_or_the_cli(model_dir: Path) -> None:
    """Without lineage a model decodes greedily; `num_beams` and `--num-beams` choose, and fewer than
    one beam is refused by name."""
    assert unleet.load(model_dir).num_beams == 1
    decoder = unleet.load(model_dir, num_beams=3)
    assert decoder.num_beams == 3
    assert decoder.decode(["gg wp"], max_new_tokens=48) == [KNOWN["gg wp"]]
    result = decode("--model", str(model_dir), "--num-beams", "3", "gg wp")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines() == [KNOWN["gg wp"]]
    result = decode("--model", str(model_dir), "--num-beams", "0", "gg wp")
    assert result.returncode != 0
    assert "num_beams 0: must be at least 1" in result.stderr.decode()


def test_copy_bias_leans_towards_the_unchanged_input_by_nats_per_word(model_dir: Path) -> None:
    """The input wins exactly when its log-likelihood plus `copy_bias` per word beats the model's answer."""
    decoder = unleet.load(model_dir, rerank=True)
    text, answer = "gg wp", KNOWN["gg wp"]
    batch = decoder.tokenizer([text, text], text_target=[answer, text], return_tensors="pt", padding=True)
    targets = batch.pop("labels")
    labels = targets.masked_fill(targets == decoder.tokenizer.pad_token_id, -100)
    with torch.no_grad():
        logits = decoder.model(**batch, labels=labels).logits
    picked = torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    answer_score, input_score = (picked * (labels != -100)).sum(-1).tolist()
    margin_per_word = (answer_score - input_score) / len(text.split())
    assert margin_per_word > 0  # the memorised answer beats copying without a bias

    for bias, expected in ((margin_per_word * 0.9, answer), (margin_per_word * 1.1, text)):
        assert unleet.load(model_dir, rerank=True, copy_bias=bias).decode([text], max_new_tokens=48) == [expected]
        result = decode("--model", str(model_dir), "--rerank", "--copy-bias", str(bias), text)
        assert result.returncode == 0, result.stderr.decode()
        assert result.stdout.decode().splitlines() == [expected]
    result = decode("--model", str(model_dir), "--copy-bias", "-1", text)
    assert result.returncode != 0
    assert "copy bias -1.0: must be at least 0" in result.stderr.decode()
    result = decode("--model", str(model_dir), "--rerank", "--slang-bias", "-1", text)
    assert result.returncode != 0
    assert "slang bias -1.0: must be at least 0" in result.stderr.decode()


def test_slang_bias_lets_a_rewrite_of_only_listed_slang_share_the_copy_prior() -> None:
    """A rewrite that changes only `lol` competes with the input on likelihood, less `slang_bias`
    per slang word; one that also changes an unlisted word (`too`) stays behind the copy prior."""
    text = "I think so too lol"
    in_place, misread = "I think so too, laughing out loud.", "I think so two, laughing out loud."
    candidates = [[in_place, misread], [text, text], ["I think so too laughing out loud.", misread]]
    scores = torch.tensor([[-3.0, -3.0], [-6.0, -6.0], [-9.0, -9.0]])  # the input: 5 nats of prior at 1 a word

    assert picks(scores, candidates, copy_bias=1.0) == [1, 1]
    assert picks(scores, candidates, copy_bias=1.0, slang_bias=1.0) == [0, 1]  # -3 + 4 beats -6 + 5
    assert picks(scores, candidates, copy_bias=1.0, slang_bias=3.0) == [0, 1]  # level: ties keep the model's
    assert picks(scores, candidates, copy_bias=1.0, slang_bias=4.0) == [1, 1]


@pytest.mark.parametrize(
    ("rewrite", "only_slang"),
    [
        ("I think so too, laughing out loud.", True),  # case and punctuation aside
        ("i think so too", True),  # a run of slang may become nothing
        ("I think so too lol", True),
        ("I think so two, laughing out loud.", False),  # an unlisted word changed
        ("I think so so too, laughing out loud.", False),  # a word added among unlisted ones
        ("I think, laughing out loud.", False),  # unlisted words dropped
    ],
)
def test_rewrites_only_slang_keeps_every_unlisted_word_in_place(rewrite: str, only_slang: bool) -> None:
    assert rewrites_only_slang("I think so too lol", rewrite, load_table()) is only_slang


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", ": empty, nothing to decode"),
        (b"\n  \n", ": empty, nothing to decode"),
        (b"fine\n\xff\xfe broken\n", ":2: not UTF-8 text (byte 0)"),
    ],
    ids=["empty", "blank", "not-utf8"],
)
def test_bad_input_files_are_named(content: bytes, message: str, model_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "inputs.txt"
    path.write_bytes(content)
    result = decode("--model", str(model_dir), "--file", str(path))
    assert result.returncode == 1 and result.stdout == b""
    assert f"{path}{message}" in result.stderr.decode()


def test_missing_model_and_missing_file_are_named(model_dir: Path, tmp_path: Path) -> None:
    result = decode("--model", str(tmp_path / "nowhere"), "idk")
    assert result.returncode == 1 and f"{tmp_path / 'nowhere'}: no such model directory" in result.stderr.decode()
    result = decode("--model", str(model_dir), "--file", str(tmp_path / "missing.txt"))
    assert result.returncode == 1 and "missing.txt: no such file" in result.stderr.decode()
    result = decode("--model", str(model_dir), stdin=b"\xc3\x28\n")
    assert result.returncode == 1 and "stdin:1: not UTF-8 text" in result.stderr.decode()
