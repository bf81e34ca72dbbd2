"""Metrics each task's field uses: classification, seqeval-style NER, SQuAD, generation (BLEU, chrF, ROUGE)."""

from rubert_tf.metrics.classification import accuracy, macro_f1, matthews_corrcoef
from rubert_tf.metrics.generation import corpus_bleu, corpus_chrf, rouge_scores
from rubert_tf.metrics.ner import entity_scores, get_entities
from rubert_tf.metrics.squad import exact_match, f1, normalize_answer, squad_scores

__all__ = ["accuracy", "corpus_bleu", "corpus_chrf", "entity_scores", "exact_match", "f1", "get_entities", "macro_f1",
           "matthews_corrcoef", "normalize_answer", "rouge_scores", "squad_scores"]
