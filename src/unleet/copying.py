"""Pegasus with a copy head (a pointer-generator, See et al. 2017): each output token is a mixture of
the vocabulary softmax and a copy of a source token, weighted by a learnt gate.

Why: a small decoder slips when it copies long rare strings by generation alone (`upauly13771377`
→ `upauly1377`, `877cashnow` → `87cashnow`, names, ids), and those slips are what forces a large
copy bias at rerank time, which then costs the real comments their needed edits. With a copy head a
token can be copied exactly whenever the attention finds it.

The logits the model returns are the mixture's log-probabilities, so cross-entropy, `generate` and
`Decoder.likelihoods` work unchanged (log-softmax of log-probabilities is the identity). In training
mode a forward with labels returns the loss alone, the mixture computed at the labels only. The
source ids travel with the encoder's output, so decoding steps that see only `encoder_outputs`
still know what they may copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSeq2SeqLM, PegasusConfig, PegasusForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput
from transformers.models.pegasus.modeling_pegasus import shift_tokens_right

from unleet.errors import UnleetError

TINY = 1e-9  # floor of a mixture probability before its log: keeps gradients finite


class CopyPegasusConfig(PegasusConfig):
    model_type = "unleet_copy_pegasus"


@dataclass
class SourceEncoderOutput(BaseModelOutput):
    """The encoder's output and the token ids it read: what the copy head may copy."""

    source_ids: torch.LongTensor | None = None


class _SourceKeepingEncoder(nn.Module):
    """The model's encoder, returning the source ids beside its states."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.main_input_name = "input_ids"

    def forward(self, input_ids: torch.LongTensor, **kwargs: object) -> SourceEncoderOutput:
        kwargs["return_dict"] = True
        encoded = self.encoder(input_ids=input_ids, **kwargs)
        return SourceEncoderOutput(
            last_hidden_state=encoded.last_hidden_state,
            hidden_states=encoded.hidden_states,
            attentions=encoded.attentions,
            source_ids=input_ids,
        )


class CopyPegasusForConditionalGeneration(PegasusForConditionalGeneration):
    config_class = CopyPegasusConfig

    def __init__(self, config: CopyPegasusConfig) -> None:
        super().__init__(config)
        self.copy_query = nn.Linear(config.d_model, config.d_model, bias=False)
        self.copy_gate = nn.Linear(2 * config.d_model, 1)
        self.post_init()

    def get_encoder(self, modality: str | None = None) -> nn.Module:
        return _SourceKeepingEncoder(self.model.encoder)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        encoder_outputs: BaseModelOutput | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: object,
    ) -> Seq2SeqLMOutput:
        source_ids = input_ids if input_ids is not None else getattr(encoder_outputs, "source_ids", None)
        if source_ids is None:
            raise UnleetError("copy head: no source ids (pass input_ids, or encoder outputs from get_encoder())")
        if labels is not None and decoder_input_ids is None:
            decoder_input_ids = shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)
            kwargs["use_cache"] = False
        outputs = self.model(
            input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            encoder_outputs=encoder_outputs,
            **kwargs,
        )
        hidden, memory = outputs.last_hidden_state, outputs.encoder_last_hidden_state
        logits = self.lm_head(hidden) + self.final_logits_bias
        attended = attention_mask.bool() if attention_mask is not None else source_ids != self.config.pad_token_id
        attention, gate = self._copy_attention(hidden, memory, attended)
        loss = None if labels is None else self._label_loss(logits, attention, gate, source_ids, labels)
        return Seq2SeqLMOutput(
            loss=loss,
            logits=None if self.training and loss is not None else self._mixture(logits, attention, gate, source_ids),
            cache=outputs.cache,
            encoder_last_hidden_state=memory,
        )

    def _copy_attention(
        self, hidden: torch.Tensor, memory: torch.Tensor, attended: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each output position's attention over the source tokens, and its gate: the weight of writing
        from the vocabulary rather than copying."""
        hidden, memory = hidden.float(), memory.float()
        scores = self.copy_query(hidden) @ memory.transpose(1, 2) / memory.shape[-1] ** 0.5
        scores = scores.masked_fill(~attended[:, None, :], torch.finfo(scores.dtype).min)  # finite: no NaN
        attention = scores.softmax(dim=-1)
        gate = torch.sigmoid(self.copy_gate(torch.cat([hidden, attention @ memory], dim=-1)))
        return attention, gate

    def _mixture(
        self, logits: torch.Tensor, attention: torch.Tensor, gate: torch.Tensor, source_ids: torch.LongTensor
    ) -> torch.Tensor:
        """log(gate · softmax(logits) + (1 - gate) · attention scattered onto the source's token ids)."""
        copied = torch.zeros_like(logits, dtype=torch.float32)
        copied.scatter_add_(-1, source_ids[:, None, :].expand(-1, attention.shape[1], -1), attention)
        mixed = gate * logits.float().softmax(dim=-1) + (1 - gate) * copied
        return mixed.clamp_min(TINY).log()

    def _label_loss(
        self,
        logits: torch.Tensor,
        attention: torch.Tensor,
        gate: torch.Tensor,
        source_ids: torch.LongTensor,
        labels: torch.LongTensor,
    ) -> torch.Tensor:
        """The mixture's mean negative log-likelihood of the labels, computed at the labels alone: what
        `_mixture` then `nll_loss` give, without mixing the whole vocabulary at every position (its
        scatter, mixing and log, forward and backward, cost about a tenth of a CPU training step)."""
        kept = labels != -100
        targets = labels.clamp(min=0)
        logits = logits.float()
        written = (logits.gather(-1, targets[..., None])[..., 0] - logits.logsumexp(dim=-1)).exp()
        copied = (attention * (source_ids[:, None, :] == targets[..., None])).sum(dim=-1)
        gate = gate[..., 0]
        probability = gate * written + (1 - gate) * copied
        return -(probability.clamp_min(TINY).log() * kept).sum() / kept.sum()


AutoConfig.register(CopyPegasusConfig.model_type, CopyPegasusConfig)
AutoModelForSeq2SeqLM.register(CopyPegasusConfig, CopyPegasusForConditionalGeneration)
