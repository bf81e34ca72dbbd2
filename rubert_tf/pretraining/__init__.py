"""MLM pretraining: corpus preparation (text -> packed TFRecord shards) and the `pretrain` runner.

    from rubert_tf.pretraining import prepare_corpus, pretrain
    prepare_corpus(["corpus/*.txt"], "shards/", tokenizer, max_length=128)
    pretrain(train="shards/", out="models/mlm", config="cointegrated/rubert-tiny2", steps=10_000)

The corpus writer (prepare_corpus) is rubert_tf/data/pretraining_corpus.py, its reader and the tf.data
pipeline with dynamic masking rubert_tf/data/pretraining.py, the model rubert_tf/models/pretraining.py.
"""

# The corpus writer sits with its reader in rubert_tf/data/; this name stays importable.
from rubert_tf.data.pretraining_corpus import prepare_corpus
# The function shadows its module's name on purpose (as rubert_tf.export does): `pretraining.pretrain(...)`.
from rubert_tf.pretraining.pretrain import pretrain

__all__ = ["prepare_corpus", "pretrain"]
