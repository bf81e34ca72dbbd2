"""RuBertConfig: the architecture numbers of a BERT encoder.

Reads and writes HuggingFace `config.json` and the original TF1 `bert_config.json`
(google-research/bert), and knows the published RuBERT models by name (presets).
"""

import dataclasses
import json
import os

from rubert_tf import hub

# Keys of HF BertConfig that we model explicitly. Anything else found in a config.json
# (e.g. "architectures", "torch_dtype", rubert-tiny's "emb_size") is kept in `extra`
# and written back unchanged, so a round trip loses nothing.
_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "type_vocab_size",
    "initializer_range",
    "layer_norm_eps",
    "pad_token_id",
)

SUPPORTED_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish", "tanh")


@dataclasses.dataclass
class RuBertConfig:
    """The architecture numbers of a BERT encoder, named as in HF's BertConfig (defaults: rubert-base).
    Keys it does not model (id2label, a checkpoint's own extras) travel in `extra`.

    Example:

    >>> import rubert_tf as rt
    >>> config = rt.RuBertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1,
    ...                          num_attention_heads=2, intermediate_size=64)
    >>> config.head_size
    16
    >>> rt.RuBertConfig.from_dict(config.to_dict()) == config
    True
    >>> rt.RuBertConfig.from_pretrained("cointegrated/rubert-tiny2").hidden_size  # a preset: no download
    312
    """

    vocab_size: int = 119547
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    # ELECTRA's factorised embeddings (HF ElectraConfig's key): width E of the embeddings, projected to
    # hidden_size by `embeddings_project`. None: hidden_size (BERT), and to_dict() leaves the key out.
    embedding_size: int = None
    extra: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"RuBertConfig.{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"RuBertConfig.hidden_size ({self.hidden_size}) is not a multiple of "
                f"num_attention_heads ({self.num_attention_heads})")
        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            raise ValueError(
                f"RuBertConfig.hidden_act {self.hidden_act!r} is not supported; "
                f"use one of {SUPPORTED_ACTIVATIONS}")
        if self.embedding_size is not None and (not isinstance(self.embedding_size, int)
                                                or isinstance(self.embedding_size, bool) or self.embedding_size <= 0):
            raise ValueError(f"RuBertConfig.embedding_size must be a positive integer or None, got "
                             f"{self.embedding_size!r}")
        # rubert-tiny/rubert-tiny2 carry "emb_size". HF's BertModel ignores it: its word
        # embeddings are [vocab, hidden_size] (rubert-tiny2: emb_size == hidden_size == 312).
        # A value that differs would mean a factorised embedding that no HF Bert checkpoint
        # has, so we refuse it instead of silently building something else.
        emb_size = self.extra.get("emb_size")
        if emb_size is not None and emb_size != self.hidden_size:
            raise ValueError(
                f"config emb_size={emb_size} differs from hidden_size={self.hidden_size}; HF BertModel "
                "ignores emb_size and stores embeddings as [vocab, hidden_size], so such a checkpoint "
                "cannot be a BERT checkpoint")

    @property
    def head_size(self):
        return self.hidden_size // self.num_attention_heads

    @property
    def embedding_width(self):
        """Width of the embeddings: embedding_size, or hidden_size when it is None."""
        return self.hidden_size if self.embedding_size is None else self.embedding_size

    @property
    def factorized_embeddings(self):
        """True when the embeddings are narrower/wider than hidden_size (ELECTRA's embeddings_project)."""
        return self.embedding_width != self.hidden_size

    # ---- dict / json -------------------------------------------------------------
    @classmethod
    def from_dict(cls, values):
        values = dict(values)
        known = {k: values.pop(k) for k in _FIELDS if k in values}
        values.pop("extra", None)
        embedding_size = values.pop("embedding_size", None)
        if embedding_size is None and values.get("model_type") == "electra":
            embedding_size = 128  # HF ElectraConfig's default, which its config.json may leave out
        known["embedding_size"] = embedding_size
        # "gelu" in TF1 bert_config.json: HF's converter (and so every PyTorch RuBERT) reads it
        # as exact erf GELU, which is also what google-research/bert's tanh formula approximates.
        return cls(**known, extra=values)

    def to_dict(self):
        out = dict(self.extra)
        out.update({k: getattr(self, k) for k in _FIELDS})
        if self.embedding_size is not None:
            out["embedding_size"] = self.embedding_size
        return out

    def to_hf_dict(self):
        """config.json of HF's BertModel, or of its ElectraModel when the embeddings are factorised (the only
        layout that has them). A model_type read from the other family's checkpoint (an Electra discriminator
        with E == H, say) is not kept, nor its architectures: they would make transformers build another model."""
        out = {"architectures": ["BertModel"]}
        out.update(self.to_dict())
        model_type = "electra" if self.factorized_embeddings else "bert"
        if out.get("model_type", model_type) != model_type:
            out["architectures"] = ["ElectraModel" if self.factorized_embeddings else "BertModel"]
        out["model_type"] = model_type
        out.setdefault("position_embedding_type", "absolute")
        return dict(sorted(out.items()))

    def to_tf1_dict(self):
        """bert_config.json of google-research/bert: only the keys its BertConfig knows."""
        keys = [k for k in _FIELDS if k != "pad_token_id"]
        return {k: getattr(self, k) for k in keys}

    @classmethod
    def from_json_file(cls, path):
        try:
            with open(path, encoding="utf-8") as f:
                values = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a JSON object, got {type(values).__name__}")
        try:
            return cls.from_dict(values)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from None

    def save_pretrained(self, directory, tf1=False):
        os.makedirs(directory, exist_ok=True)
        name, values = ("bert_config.json", self.to_tf1_dict()) if tf1 else ("config.json", self.to_hf_dict())
        path = os.path.join(directory, name)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(values, f, indent=2, ensure_ascii=False)
            f.write("\n")
        return path

    @classmethod
    def from_pretrained(cls, name_or_path):
        """A directory with config.json or bert_config.json, a json file, a preset (short name such as
        "rubert-tiny2" or hub id, known offline), or another hub id (its config.json is downloaded)."""
        name_or_path = os.path.expanduser(os.fspath(name_or_path))
        # Local paths first, presets next: a user's folder named "rubert-tiny2" is never shadowed.
        if os.path.isfile(name_or_path):
            return cls.from_json_file(name_or_path)
        if os.path.isdir(name_or_path):
            for name in ("config.json", "bert_config.json"):
                path = os.path.join(name_or_path, name)
                if os.path.isfile(path):
                    return cls.from_json_file(path)
            raise FileNotFoundError(f"{name_or_path}: no config.json or bert_config.json in this directory")
        preset = PRESETS.get(hub.hub_id(name_or_path))
        if preset is not None:
            return cls.from_dict(preset)
        return cls.from_pretrained(hub.resolve(name_or_path, files="config"))


# Architecture numbers read from each model's published config.json on the HuggingFace hub
# (huggingface.co/<name>/blob/<commit>/config.json; commits named below). Keys a config leaves out
# (ruBert-base/-large have no layer_norm_eps or pad_token_id) take HF BertConfig's defaults, as
# transformers does.
_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
             max_position_embeddings=512, type_vocab_size=2, hidden_act="gelu", layer_norm_eps=1e-12,
             hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, initializer_range=0.02,
             pad_token_id=0)
_LARGE = dict(_BASE, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)

PRESETS = {
    # DeepPavlov/rubert-base-cased config.json @ d90263a: vocab 119547, BERT-base shape.
    "DeepPavlov/rubert-base-cased": dict(_BASE, vocab_size=119547),
    # DeepPavlov/rubert-base-cased-sentence: same shape and vocab as rubert-base-cased (read from a
    # fine-tune whose _name_or_path is this model; the model card says: mean pooling).
    "DeepPavlov/rubert-base-cased-sentence": dict(_BASE, vocab_size=119547),
    # cointegrated/rubert-tiny2 config.json @ 77a7ef3 (also ../shared/data/rubert-tiny2/config.json).
    "cointegrated/rubert-tiny2": dict(_BASE, vocab_size=83828, hidden_size=312, num_hidden_layers=3,
                                      num_attention_heads=12, intermediate_size=600,
                                      max_position_embeddings=2048, emb_size=312),
    # cointegrated/rubert-tiny config.json @ f191937.
    "cointegrated/rubert-tiny": dict(_BASE, vocab_size=29564, hidden_size=312, num_hidden_layers=3,
                                     num_attention_heads=12, intermediate_size=600,
                                     max_position_embeddings=512, emb_size=312),
    # ai-forever/ruBert-base config.json @ 43be426: BERT-base shape, vocab 120138.
    "ai-forever/ruBert-base": dict(_BASE, vocab_size=120138),
    # ai-forever/ruBert-large config.json @ b7c4875: BERT-large shape, vocab 120138.
    "ai-forever/ruBert-large": dict(_LARGE, vocab_size=120138),
    # ai-forever/sbert_large_nlu_ru config.json @ 8a5579b: BERT-large shape, vocab 120138.
    "ai-forever/sbert_large_nlu_ru": dict(_LARGE, vocab_size=120138),
}


# The label id that losses and metrics skip (positions that are not predicted): HF's ignore index.
IGNORE_LABEL = -100


def generator_config_for(config, hidden_size=None):
    """The generator's RuBertConfig for a discriminator `config`, as the paper sizes it: the same depth
    (its small and base models keep the discriminator's layer count), about 1/4 of the width
    (hidden = hidden_size // 4 rounded down to a multiple of its heads, unless `hidden_size` is given),
    heads = max(1, num_attention_heads // 4) (fewer when they must divide a given `hidden_size`),
    intermediate = 4 * hidden, and the discriminator's embedding width (the embeddings are shared)."""
    config = config if isinstance(config, RuBertConfig) else RuBertConfig.from_dict(config)
    heads = max(1, config.num_attention_heads // 4)
    if hidden_size is None:
        hidden_size = max(heads, config.hidden_size // 4 // heads * heads)
    hidden_size = int(hidden_size)
    if hidden_size < 1:
        raise ValueError(f"generator hidden_size must be positive, got {hidden_size}")
    while hidden_size % heads:
        heads -= 1
    values = config.to_dict()
    # The discriminator checkpoint's labels and rubert-tiny's emb_size (== its hidden_size) are not the generator's.
    for key in ("emb_size", "id2label", "label2id", "problem_type", "architectures"):
        values.pop(key, None)
    values.update(hidden_size=hidden_size, num_attention_heads=heads, intermediate_size=4 * hidden_size,
                  embedding_size=config.embedding_width)
    return RuBertConfig.from_dict(values)
