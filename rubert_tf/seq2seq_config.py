"""Seq2SeqConfig: the two halves of an encoder-decoder, its flavour and its special token ids.

Reads and writes HF's EncoderDecoderConfig (config.json with `is_encoder_decoder`, `encoder` and
`decoder` sub-configs), so bert2bert checkpoints travel between transformers and rubert_tf.
"""

import copy
import dataclasses

from rubert_tf.config import RuBertConfig

ARCHITECTURES = ("bert2bert", "transformer")
# Top-level keys of an EncoderDecoderConfig we model; everything else is kept in `extra`.
_TOKEN_KEYS = ("decoder_start_token_id", "eos_token_id", "pad_token_id")


def _as_bert_config(value, name):
    if isinstance(value, RuBertConfig):
        return value
    if isinstance(value, dict):
        return RuBertConfig.from_dict(value)
    raise TypeError(f"Seq2SeqConfig.{name} must be a RuBertConfig or a dict, got {type(value).__name__}")


@dataclasses.dataclass
class Seq2SeqConfig:
    """`architecture`:
    - "bert2bert": BERT encoder + BERT decoder with cross-attention and the MLM head tied to the
      decoder's word embeddings (HF EncoderDecoderModel of BertModel + BertLMHeadModel);
    - "transformer": the classic Transformer (Vaswani et al. 2017): sinusoidal positions, embeddings
      scaled by sqrt(d) and shared by encoder, decoder and output projection. Sizes come from the
      `encoder`/`decoder` RuBertConfigs (hidden_act "relu" for the paper's FFN).
    Token ids follow HF's bert2bert convention: decoding starts with [CLS], ends with [SEP].
    """

    encoder: RuBertConfig
    decoder: RuBertConfig
    architecture: str = "bert2bert"
    decoder_start_token_id: int = None
    eos_token_id: int = None
    pad_token_id: int = None
    extra: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.encoder = _as_bert_config(self.encoder, "encoder")
        self.decoder = _as_bert_config(self.decoder, "decoder")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"Seq2SeqConfig.architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.encoder.hidden_size != self.decoder.hidden_size:
            raise ValueError(
                f"encoder hidden_size {self.encoder.hidden_size} != decoder hidden_size {self.decoder.hidden_size}: "
                "cross-attention needs equal widths (HF's enc_to_dec_proj is not supported)")
        if self.architecture == "transformer" and self.encoder.vocab_size != self.decoder.vocab_size:
            raise ValueError(f"the classic Transformer shares one vocabulary; encoder vocab_size "
                             f"{self.encoder.vocab_size} != decoder vocab_size {self.decoder.vocab_size}")
        for key in _TOKEN_KEYS:
            value = getattr(self, key)
            if value is not None and not (0 <= int(value) < self.decoder.vocab_size):
                raise ValueError(f"Seq2SeqConfig.{key}={value} is outside the decoder vocabulary "
                                 f"(0..{self.decoder.vocab_size - 1})")

    def with_tokenizer(self, tokenizer):
        """A copy whose missing token ids are the tokenizer's [CLS] / [SEP] / [PAD]."""
        config = copy.deepcopy(self)
        ids = {"decoder_start_token_id": tokenizer.cls_id, "eos_token_id": tokenizer.sep_id,
               "pad_token_id": tokenizer.pad_id}
        for key, value in ids.items():
            if getattr(config, key) is None:
                setattr(config, key, int(value))
        config.__post_init__()
        return config

    def require_token_ids(self):
        missing = [key for key in _TOKEN_KEYS if getattr(self, key) is None]
        if missing:
            raise ValueError(f"Seq2SeqConfig lacks {missing}: pass them, or a tokenizer (its [CLS]/[SEP]/[PAD] ids)")
        return self.decoder_start_token_id, self.eos_token_id, self.pad_token_id

    # ---- dict / HF config.json ------------------------------------------------------
    def to_dict(self):
        return {**self.extra, "architecture": self.architecture, "encoder": self.encoder.to_dict(),
                "decoder": self.decoder.to_dict(), **{key: getattr(self, key) for key in _TOKEN_KEYS}}

    @classmethod
    def from_dict(cls, values):
        values = dict(values)
        known = {key: values.pop(key) for key in ("encoder", "decoder", "architecture", *_TOKEN_KEYS) if key in values}
        values.pop("extra", None)
        return cls(**known, extra=values)

    def to_hf_dict(self):
        """EncoderDecoderConfig as transformers writes it (bert2bert only)."""
        if self.architecture != "bert2bert":
            raise ValueError("only bert2bert models have an HF EncoderDecoderModel layout; save the classic "
                             "Transformer with model.save(...)")
        encoder = self.encoder.to_hf_dict()
        decoder = self.decoder.to_hf_dict()
        encoder.update(is_decoder=False, add_cross_attention=False)
        decoder.update(is_decoder=True, add_cross_attention=True)
        for sub in (encoder, decoder):
            sub.pop("architectures", None)
        out = {key: value for key, value in self.extra.items() if key not in ("encoder", "decoder")}
        out.update({"architectures": ["EncoderDecoderModel"], "model_type": "encoder-decoder",
                    "is_encoder_decoder": True, "encoder": encoder, "decoder": decoder,
                    "tie_word_embeddings": False})
        out.update({key: getattr(self, key) for key in _TOKEN_KEYS})
        return out

    @classmethod
    def from_hf_dict(cls, values, source="config.json"):
        if not values.get("is_encoder_decoder") or "encoder" not in values or "decoder" not in values:
            raise ValueError(f"{source}: not an EncoderDecoderConfig (needs is_encoder_decoder, encoder and decoder)")
        for part in ("encoder", "decoder"):
            model_type = values[part].get("model_type", "bert")
            if model_type != "bert":
                raise ValueError(f"{source}: {part}.model_type is {model_type!r}; only BERT halves are supported")
        if values.get("tie_encoder_decoder"):
            raise ValueError(f"{source}: tie_encoder_decoder=True (shared encoder/decoder weights) is not supported")
        decoder = dict(values["decoder"])
        if not decoder.get("add_cross_attention", False):
            raise ValueError(f"{source}: decoder.add_cross_attention is false; a bert2bert decoder needs cross-attention")
        drop = ("is_decoder", "add_cross_attention", "architectures", "model_type")
        encoder = {k: v for k, v in values["encoder"].items() if k not in drop}
        decoder = {k: v for k, v in decoder.items() if k not in drop}
        extra = {k: v for k, v in values.items() if k not in ("encoder", "decoder", "architectures", "model_type",
                                                              "is_encoder_decoder", *_TOKEN_KEYS)}
        return cls(encoder=encoder, decoder=decoder, architecture="bert2bert",
                   **{key: values.get(key) for key in _TOKEN_KEYS}, extra=extra)
