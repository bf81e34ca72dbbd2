"""Scores of generated text: sacreBLEU's BLEU and chrF (corpus level), ROUGE-1/2/L F1 for any script.

All scores are percentages (0-100), as sacreBLEU prints them and papers report ROUGE.

    corpus_bleu(["Кошка сидит на ковре."], ["Кошка сидит на ковре."])   # 100.0
    rouge_scores(["кошка сидела на ковре"], ["Кошка сидит на ковре"])  # rouge1 75.0, rouge2 33.3, rougeL 75.0

BLEU and chrF come from the `sacrebleu` package with its defaults (BLEU: 13a tokenization, exp
smoothing, cased; chrF: character 6-grams, beta 2), so the numbers equal `sacrebleu REF -i HYP -m
bleu chrf`. ROUGE comes from `rouge-score`, but not with its default tokenizer: that one keeps only
[a-z0-9] and so turns Russian text into nothing (every score 0). `UnicodeWordTokenizer` keeps
letters and digits of any script, lowercased; stemming (Porter, English only) is not applied.
"""

import re
import unicodedata

# Runs of letters, digits and combining marks (stress marks over Cyrillic vowels stay in their word);
# rouge-score's own pattern is the ASCII-only [a-z0-9]+.
_WORD = re.compile(r"(?:[^\W_]|[\u0300-\u036f])+")
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def _check(hypotheses, references):
    hypotheses = list(hypotheses)
    references = list(references)
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    for number, text in enumerate(hypotheses, start=1):
        if not isinstance(text, str):
            raise TypeError(f"hypothesis {number} must be a string, got {type(text).__name__}")
    return hypotheses, references


def _reference_streams(references):
    """Per-hypothesis references (a string, or a list of strings) -> sacrebleu's streams
    [[first reference of every hypothesis], [second ...], ...]."""
    rows = [[reference] if isinstance(reference, str) else list(reference) for reference in references]
    counts = {len(row) for row in rows}
    if len(counts) > 1 or 0 in counts:
        raise ValueError("every hypothesis needs the same number (>= 1) of references, got "
                         f"{sorted(counts)}")
    return [list(stream) for stream in zip(*rows)] if rows else [[]]


def corpus_bleu(hypotheses, references, tokenize="13a", lowercase=False):
    """Corpus BLEU (sacreBLEU). `references[i]` is the reference of hypothesis i, or a list of them."""
    import sacrebleu

    hypotheses, references = _check(hypotheses, references)
    return float(sacrebleu.corpus_bleu(hypotheses, _reference_streams(references), tokenize=tokenize,
                                       lowercase=lowercase).score)


def corpus_chrf(hypotheses, references, word_order=0):
    """Corpus chrF (sacreBLEU; `word_order=2` gives chrF++). References as in `corpus_bleu`."""
    import sacrebleu

    hypotheses, references = _check(hypotheses, references)
    return float(sacrebleu.corpus_chrf(hypotheses, _reference_streams(references), word_order=word_order).score)


class UnicodeWordTokenizer:
    """rouge-score tokenizer: NFC, lowercase, runs of letters/digits of any script ("ё" stays "ё", not "е")."""

    def tokenize(self, text):
        return _WORD.findall(unicodedata.normalize("NFC", text).lower())


def rouge_scores(hypotheses, references, rouge_types=ROUGE_TYPES):
    """Mean per-example ROUGE F1 (x100) over the corpus, with `UnicodeWordTokenizer`.

    With several references per hypothesis, each example takes its best-matching one
    (rouge-score's `score_multi`).
    """
    from rouge_score import rouge_scorer

    hypotheses, references = _check(hypotheses, references)
    if not hypotheses:
        raise ValueError("no hypotheses to score")
    scorer = rouge_scorer.RougeScorer(list(rouge_types), tokenizer=UnicodeWordTokenizer())
    totals = dict.fromkeys(rouge_types, 0.0)
    for hypothesis, reference in zip(hypotheses, references):
        if isinstance(reference, str):
            scores = scorer.score(reference, hypothesis)
        else:
            scores = scorer.score_multi(list(reference), hypothesis)
        for name in rouge_types:
            totals[name] += scores[name].fmeasure
    return {name: 100.0 * total / len(hypotheses) for name, total in totals.items()}


def generation_scores(hypotheses, references, metric="bleu"):
    """The field's scores: "bleu" (translation) -> {"bleu", "chrf"}; "rouge" (summarization) ->
    {"rouge1", "rouge2", "rougeL"}."""
    if metric == "bleu":
        return {"bleu": corpus_bleu(hypotheses, references), "chrf": corpus_chrf(hypotheses, references)}
    if metric == "rouge":
        return rouge_scores(hypotheses, references)
    raise ValueError(f"metric must be 'bleu' or 'rouge', got {metric!r}")
