"""The tag set of an NER model: checked against the one chunking definition (rubert_tf/metrics/ner.py)
and, by default, taken from the training data. Pure Python."""

from rubert_tf.metrics.ner import split_tag

PREFIX_ORDER = ("B", "I", "E", "S")


def check_labels(labels):
    """Tag names a model can answer with; an unsupported tag (or scheme) is an error that names it."""
    for label in labels:
        try:
            split_tag(label)
        except ValueError as error:
            raise ValueError(f"labels: {error}") from None
    if "O" not in labels:
        raise ValueError(f"labels: {labels} has no 'O' tag (words outside every entity)")
    return labels


def infer_labels(tag_sequences):
    """The data's tag set in a stable order: "O", then per entity type (sorted) its prefixed tags in the
    order B, I, E, S and then the bare type, each only where the data has it."""
    seen = {(tag,) + split_tag(tag) for tags in tag_sequences for tag in tags if tag not in ("O", "")}
    order = {prefix: rank for rank, prefix in enumerate(PREFIX_ORDER)}
    ranked = sorted(seen, key=lambda item: (item[2], item[3], order[item[1]]))
    return ["O"] + [tag for tag, _, _, _ in ranked]
