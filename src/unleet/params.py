"""The typed schema of `params.yaml`, its loading, and its composition from `conf/`.

Stages read the composed `params.yaml` (never `conf/` directly), because that is the file DVC
rewrites for `dvc exp run -S ...` and hashes to decide what reruns. `conf/` is the Hydra source;
`compose` rebuilds `params.yaml` from it with DVC's own composer, so the result is byte-for-byte
what `dvc exp run` would write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

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

    The keys after `path` configure the LLM backends only. No key holds a secret: API keys are
    read from the environment variable named by `api_key_env`.
    """

    backend: str = MISSING
    path: str = MISSING
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
class CleanTextParams:
    """Extra clean texts for synthetic pairs (see `unleet.cleantext`); `path` is a DVC dependency."""

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


@dataclass
class ModelParams:
    preset: str = MISSING
    path: str | None = None
    d_model: int | None = None
    d_ff: int | None = None
    num_layers: int | None = None
    num_decoder_layers: int | None = None
    num_heads: int | None = None
    d_kv: int | None = None
    dropout: float = MISSING


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
    max_steps: int = MISSING
    warmup_steps: int = MISSING
    weight_decay: float = MISSING
    grad_clip: float = MISSING
    eval_every: int = MISSING
    sample_translations: int = MISSING
    patience: int | None = None
    keep_best: bool = MISSING
    checkpoint_every: int | None = None
    keep_checkpoints: int = MISSING
    loader_workers: int = MISSING
    compile: bool = MISSING
    gradient_checkpointing: bool = MISSING


@dataclass
class EvaluateParams:
    batch_size: int = MISSING
    max_new_tokens: int = MISSING
    num_beams: int = MISSING
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
        merged = OmegaConf.merge(OmegaConf.structured(Params), raw)
        missing = sorted(OmegaConf.missing_keys(raw) | OmegaConf.missing_keys(merged))
        if missing:
            raise UnleetError(f"{path}: missing key(s) {', '.join(missing)}")
        params = OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None)
        reason = str(error).splitlines()[0]
        raise UnleetError(f"{path}: {f'key {key!r}: ' if key else ''}{reason}") from None
    assert isinstance(params, Params)
    return params


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
    """Compose `conf/` into `params.yaml` exactly as `dvc exp run` does with Hydra enabled."""
    from dvc.utils.hydra import compose_and_dump

    output = Path(output)
    compose_and_dump(output, str(CONF_DIR.resolve()), None, "config", str(Path.cwd()), overrides or [])
    return output
