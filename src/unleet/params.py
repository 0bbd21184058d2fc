"""The typed schema of `params.yaml`, its loading, and its composition from `conf/`.

Stages read the composed `params.yaml` (never `conf/` directly), because that is the file DVC
rewrites for `dvc exp run -S ...` and hashes to decide what reruns. `conf/` is the Hydra source;
`compose` rebuilds `params.yaml` from it with Hydra alone, the same steps DVC's composer takes
(compose, resolve, dump), so the result is byte-for-byte what `dvc exp run` would write. It
validates the result before writing: a mistyped override never reaches `params.yaml`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from unleet import io
from unleet.errors import UnleetError

PARAMS_FILE = Path("params.yaml")
CONF_DIR = Path("conf")


@dataclass
class ScrapeFilters:
    min_chars: int = MISSING
    max_chars: int = MISSING
    drop_deleted: bool = MISSING
    drop_urls: bool = MISSING
    max_markup_share: float = MISSING


@dataclass
class ScrapeParams:
    """Where comments come from; the keys after `filters` configure the live `reddit` source only."""

    source: str = MISSING
    path: str = MISSING
    limit: int | None = None
    filters: ScrapeFilters = field(default_factory=ScrapeFilters)
    base_url: str | None = None
    subreddits: list[str] | None = None
    sort: str | None = None
    pages: int | None = None
    user_agent: str | None = None
    min_delay_s: float | None = None
    jitter_s: float | None = None
    timeout_s: float | None = None
    max_retries: int | None = None
    backoff_s: float | None = None
    max_wait_s: float | None = None
    max_requests: int | None = None


@dataclass
class TranslateParams:
    """`path` is the lexicon, the pairs file, or, for LLM backends, the prompt template.

    `expand` names abbreviations the translations keep (`lol`, `gonna`) to write out as the
    lexicon does, whatever the backend. The keys after it configure the LLM backends only. No key
    holds a secret: API keys are read from the environment variable named by `api_key_env`.
    """

    backend: str = MISSING
    path: str = MISSING
    expand: list[str] = field(default_factory=list)
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    workers: int | None = None
    batch_size: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    timeout_s: float | None = None
    max_retries: int | None = None
    backoff_s: float | None = None
    max_wait_s: float | None = None
    requests_per_minute: float | None = None


@dataclass
class IntensityMix:
    light: float = MISSING
    medium: float = MISSING
    heavy: float = MISSING


@dataclass
class SplitShares:
    train: float = MISSING
    validation: float = MISSING
    test: float = MISSING


@dataclass
class CleanTextSource:
    """How much of one clean-text source to use: a seeded sample of `limit` texts, `variants` pairs each,
    consecutive texts joined `join` at most into one."""

    limit: int | None = None
    variants: int | None = None
    join: int | None = None


@dataclass
class CleanTextParams:
    """Extra clean texts for synthetic pairs (see `unleet.cleantext`); `path` is a DVC dependency.

    `limit`, `variants` and `join` apply to every source that `sources` (globs under `path`, or `dataset`)
    does not set.
    """

    path: str = MISSING
    field: str = "text"
    dataset: str | None = None
    dataset_config: str | None = None
    dataset_split: str = "train"
    dataset_field: str = "text"
    dataset_revision: str | None = None
    min_chars: int = MISSING
    max_chars: int = MISSING
    limit: int | None = None
    variants: int = MISSING
    join: int = 1
    sources: dict[str, CleanTextSource] = dataclasses.field(default_factory=dict)  # `field` is a key here


@dataclass
class CorruptParams:
    seed: int = MISSING
    variants: int = MISSING
    intensity_mix: IntensityMix = field(default_factory=IntensityMix)
    preserve_share: float = MISSING
    include_original: bool = MISSING
    splits: SplitShares = field(default_factory=SplitShares)
    clean_text: CleanTextParams = field(default_factory=CleanTextParams)


@dataclass
class TokenizerParams:
    kind: str = MISSING
    max_source_length: int = MISSING
    max_target_length: int = MISSING
    vocab_size: int | None = None
    hint: str = "none"


@dataclass
class ModelParams:
    preset: str = MISSING
    architecture: str = "t5"
    path: str | None = None
    d_model: int | None = None
    d_ff: int | None = None
    num_layers: int | None = None
    num_decoder_layers: int | None = None
    num_heads: int | None = None
    d_kv: int | None = None
    dropout: float = MISSING
    copy: bool = False


@dataclass
class PeftParams:
    method: str = MISSING
    r: int | None = None
    alpha: int | None = None
    dropout: float | None = None
    target_modules: list[str] | None = None
    merge: bool = MISSING


@dataclass
class TrainParams:
    seed: int = MISSING
    lr: float = MISSING
    batch_tokens: int = MISSING
    pad_multiple: int = MISSING
    buckets: int = MISSING
    max_steps: int = MISSING
    warmup_steps: int = MISSING
    weight_decay: float = MISSING
    beta2: float = MISSING
    grad_clip: float = MISSING
    log_every: int = MISSING
    eval_every: int = MISSING
    sample_translations: int = MISSING
    patience: int | None = None
    keep_best: bool = MISSING
    checkpoint_every: int | None = None
    keep_checkpoints: int = MISSING
    loader_workers: int = MISSING
    compile: bool = MISSING
    gradient_checkpointing: bool = MISSING
    precision: str = MISSING


@dataclass
class EvaluateParams:
    batch_size: int = MISSING
    max_new_tokens: int = MISSING
    num_beams: int = MISSING
    rerank: bool = MISSING
    copy_bias: float = MISSING
    slang_bias: float | None = MISSING
    samples: int = MISSING


@dataclass
class TrackingParams:
    enabled: bool = MISSING
    experiment: str = MISSING
    register_model: str | None = None


@dataclass
class Params:
    scrape: ScrapeParams = field(default_factory=ScrapeParams)
    translate: TranslateParams = field(default_factory=TranslateParams)
    corrupt: CorruptParams = field(default_factory=CorruptParams)
    tokenizer: TokenizerParams = field(default_factory=TokenizerParams)
    model: ModelParams = field(default_factory=ModelParams)
    peft: PeftParams = field(default_factory=PeftParams)
    train: TrainParams = field(default_factory=TrainParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    tracking: TrackingParams = field(default_factory=TrackingParams)


def load(path: str | Path = PARAMS_FILE) -> Params:
    """Read `params.yaml` and validate it against `Params`, naming any unknown, missing or mistyped key."""
    path = Path(path)
    if not path.is_file():
        raise UnleetError(f"{path}: not found; run `unleet params` to compose it from {CONF_DIR}/")
    try:
        raw = OmegaConf.load(path)
    except (OmegaConfBaseException, OSError, ValueError) as error:  # broken YAML
        raise UnleetError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    return validate(raw, str(path))


def validate(raw: DictConfig, source: str = "") -> Params:
    """`raw` as typed `Params`; an error names `source` (if given), the key, and for an unknown key the valid ones."""
    where = f"{source}: " if source else ""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Params), raw)
        missing = sorted(OmegaConf.missing_keys(raw) | OmegaConf.missing_keys(merged))
        if missing:
            raise UnleetError(f"{where}missing key(s) {', '.join(missing)}")
        params = OmegaConf.to_object(merged)
    except ConfigKeyError as error:
        raise UnleetError(f"{where}{unknown_key(str(error.full_key))}") from None
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None)
        reason = str(error).splitlines()[0]
        raise UnleetError(f"{where}{f'key {key!r}: ' if key else ''}{reason}") from None
    assert isinstance(params, Params)
    return params


def unknown_key(dotted: str) -> str:
    """ "train.lrr: unknown key; train has: ..." — the keys the schema allows where the unknown one sits."""
    schema: type = Params
    parts = dotted.split(".")
    for depth, part in enumerate(parts[:-1]):
        fields = {item.name: item for item in dataclasses.fields(schema)}
        if part not in fields:
            return unknown_key(".".join(parts[: depth + 1]))
        section = fields[part].default_factory
        if section is dataclasses.MISSING or not dataclasses.is_dataclass(section):
            return f"{dotted}: unknown key; {'.'.join(parts[: depth + 1])} is a value, not a section"
        schema = section
    where = ".".join(parts[:-1]) or "params.yaml"
    return f"{dotted}: unknown key; {where} has: {', '.join(item.name for item in dataclasses.fields(schema))}"


def schema_keys(schema: type = Params, prefix: str = "") -> set[str]:
    """Every dotted key of the schema, sections included: `train`, `train.lr`, ..."""
    keys = set()
    for item in dataclasses.fields(schema):
        keys.add(f"{prefix}{item.name}")
        section = item.default_factory
        if section is not dataclasses.MISSING and dataclasses.is_dataclass(section):
            keys |= schema_keys(section, f"{prefix}{item.name}.")
    return keys


def require(section: object, name: str, keys: list[str]) -> None:
    """Fail naming every key in `keys` that an option needs but `params.yaml` leaves null."""
    missing = [f"{name}.{key}" for key in keys if getattr(section, key) is None]
    if missing:
        raise UnleetError(f"params.yaml: {', '.join(missing)} must be set for {name}.{_selector(section)}")


def _selector(section: object) -> str:
    for key in ("source", "backend"):
        if hasattr(section, key):
            return f"{key}={getattr(section, key)}"
    return "this option"


def compose(overrides: list[str] | None = None, output: str | Path = PARAMS_FILE) -> Path:
    """Compose `conf/` with Hydra into `output`, as `dvc exp run` does; validate first, then write atomically."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    overrides = overrides or []
    try:
        with initialize_config_dir(str(CONF_DIR.resolve()), version_base=None):
            config = hydra_compose(config_name="config", overrides=overrides)
        OmegaConf.resolve(config)
    except HydraException as error:
        raise UnleetError(_override_error(str(error), overrides, getattr(error.__cause__, "full_key", ""))) from None
    validate(config)
    output = Path(output)
    io.write_text(output, OmegaConf.to_yaml(config))
    return output


def _override_error(message: str, overrides: list[str], failed_key: str = "") -> str:
    """One line for Hydra's multi-line composition errors, naming the key or option and what is valid.

    `failed_key` is the key OmegaConf refused: below the overridden one when a dict value gets an
    entry it lacks. In a free mapping such as `corrupt.clean_text.sources` (a schema key without
    keys of its own) a plain `key=` cannot add it and `++key=` can; in a section it is unknown.
    """
    if match := re.search(r"Could not override '([^']+)'", message):
        key = match.group(1)
        keys = schema_keys()
        if failed_key.startswith(f"{key}."):
            if key not in keys or any(known.startswith(f"{key}.") for known in keys):
                return unknown_key(failed_key)
            entry = failed_key.removeprefix(f"{key}.")
            return f"{key}: {entry} is a new entry of this mapping; write ++{key}=... to add entries"
        if key in keys:
            return f"{key}: no value in {CONF_DIR}/ for the chosen option; set it in that option's YAML file"
        return unknown_key(key)
    if match := re.search(r"Could not find '([^']+)/([^'/]+)'", message):
        group, option = match.groups()
        options = sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))
        return f"{group}={option}: unknown option; {group} has: {', '.join(options)}"
    if match := re.search(r"Could not load '([^']+)'", message):
        return f"{match.group(1)}: no such config"
    lines = [line.strip() for line in message.splitlines() if line.strip() and not line.startswith("See ")]
    return f"cannot apply overrides {' '.join(overrides)}: {'; '.join(lines[:2])}"
