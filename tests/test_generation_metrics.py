"""Generation metrics: BLEU and chrF equal hand-computed values and the sacrebleu command line on real
NTREX references; ROUGE-1/2/L on Russian text equals hand-computed values (rouge-score's default
tokenizer would score it 0)."""

import json
import math
import os
import random
import subprocess
import sys

import pytest
from rouge_score import rouge_scorer

from rubert_tf.metrics.generation import (UnicodeWordTokenizer, corpus_bleu, corpus_chrf, generation_scores,
                                          rouge_scores)


def test_bleu_hand_computed():
    # Precisions 5/6, 3/5, 2/4, 1/3 (the hypothesis' second "the" is clipped), equal lengths: no brevity penalty.
    expected = 100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert corpus_bleu(["the cat sat on the mat"], ["the cat sat on a mat"]) == pytest.approx(expected, abs=1e-9)
    # Russian: every n-gram matches, 4 of 6 reference words: BP = exp(1 - 6/4).
    assert corpus_bleu(["Кошка сидит на ковре"], ["Кошка сидит на ковре у двери"]) == \
        pytest.approx(100 * math.exp(-0.5), abs=1e-9)
    # 13a tokenization splits the full stop off; BLEU is cased by default.
    assert corpus_bleu(["Кошка сидит на ковре."], ["Кошка сидит на ковре."]) == pytest.approx(100)
    assert corpus_bleu(["кошка сидит на ковре."], ["Кошка сидит на ковре."]) < 100
    assert corpus_bleu(["кошка сидит на ковре."], ["Кошка сидит на ковре."], lowercase=True) == pytest.approx(100)


def test_chrf_hand_computed_at_corpus_level():
    # "кот" vs "кит": char 1-grams P = R = 2/3, 2- and 3-grams 0, orders 4-6 absent: mean P = R = 2/9.
    assert corpus_chrf(["кот"], ["кит"]) == pytest.approx(100 * 2 / 9, abs=1e-9)
    # Corpus level sums the statistics: 1-grams 4/5, 2-grams 1/3, 3-grams 0/1 -> mean (4/5 + 1/3) / 3,
    # not the mean of the sentence scores (22.2 and 100).
    assert corpus_chrf(["кот", "да"], ["кит", "да"]) == pytest.approx(100 * (4 / 5 + 1 / 3) / 3, abs=1e-9)


def test_bleu_and_chrf_equal_the_sacrebleu_command_line(shared_data, tmp_path):
    with open(os.path.join(shared_data, "ntrex-en-ru", "train.ru"), encoding="utf-8") as f:
        references = f.read().splitlines()[:50]
    # Hypotheses: the references with some words dropped and neighbours swapped (deterministic).
    rng = random.Random(0)
    hypotheses = []
    for reference in references:
        words = [w for w in reference.split() if rng.random() > 0.2]
        if len(words) > 3:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
        hypotheses.append(" ".join(words))
    ref_file, hyp_file = tmp_path / "ref.ru", tmp_path / "hyp.ru"
    ref_file.write_text("\n".join(references) + "\n", encoding="utf-8")
    hyp_file.write_text("\n".join(hypotheses) + "\n", encoding="utf-8")
    output = subprocess.run([sys.executable, "-m", "sacrebleu", str(ref_file), "-i", str(hyp_file), "-m", "bleu",
                             "chrf", "-b", "-w", "6"], capture_output=True, text=True, check=True).stdout
    cli_bleu, cli_chrf = json.loads(output)
    scores = generation_scores(hypotheses, references, metric="bleu")
    assert scores["bleu"] == pytest.approx(cli_bleu, abs=1e-6) and scores["chrf"] == pytest.approx(cli_chrf, abs=1e-6)
    assert 20 < scores["bleu"] < 80 and 40 < scores["chrf"] < 95


def test_several_references_per_hypothesis():
    hypotheses = ["Кошка сидит на ковре", "Собака спит"]
    one = corpus_bleu(hypotheses, ["Кошка сидела на ковре", "Собака спит"])
    two = corpus_bleu(hypotheses, [["Кошка сидела на ковре", "Кошка сидит на ковре"], ["Пёс спит", "Собака спит"]])
    assert two == pytest.approx(100) and one < 100
    assert corpus_chrf(hypotheses, [["x", hypotheses[0]], ["y", hypotheses[1]]]) == pytest.approx(100)
    with pytest.raises(ValueError, match="same number"):
        corpus_bleu(hypotheses, [["a", "b"], ["c"]])
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        corpus_chrf(hypotheses, ["a"])


def test_rouge_on_russian_hand_computed():
    # Unigrams: кошка, на, ковре shared of 4 and 4 -> F1 3/4; bigrams: only (на ковре) of 3 and 3 -> 1/3;
    # LCS кошка-на-ковре = 3 -> 3/4. Case is folded.
    scores = rouge_scores(["кошка сидела на ковре"], ["Кошка сидит на ковре"])
    assert scores == pytest.approx({"rouge1": 75.0, "rouge2": 100 / 3, "rougeL": 75.0})
    # rouge-score's default tokenizer keeps only [a-z0-9]: Russian text becomes empty and scores 0.
    default = rouge_scorer.RougeScorer(["rouge1"]).score("Кошка сидит на ковре", "Кошка сидит на ковре")
    assert default["rouge1"].fmeasure == 0.0

    # Reordering: every unigram matches; bigrams 2 of 3; LCS "мама мыла раму" 3 of 4.
    # A second example with punctuation and ё: tokens ёлка, стоит, 2024 vs ёлка, стоит, в, 2024 году.
    # P = 3/3, R = 3/5 -> F1 = 2 * 1 * 0.6 / 1.6 = 0.75; bigrams (ёлка стоит) of 2 and 4 -> F1 = 2 * 0.5 * 0.25 / 0.75.
    scores = rouge_scores(["вчера мама мыла раму", "Ёлка стоит, 2024!"],
                          ["Мама мыла раму вчера", "ёлка стоит в 2024 году"])
    rouge2_second = 2 * 0.5 * 0.25 / 0.75
    assert scores["rouge1"] == pytest.approx(100 * (1.0 + 0.75) / 2)
    assert scores["rouge2"] == pytest.approx(100 * (2 / 3 + rouge2_second) / 2)
    assert scores["rougeL"] == pytest.approx(100 * (0.75 + 0.75) / 2)
    assert generation_scores(["вчера мама мыла раму"], ["Мама мыла раму вчера"], metric="rouge")["rouge1"] == \
        pytest.approx(100.0)
    with pytest.raises(ValueError, match="metric must be 'bleu' or 'rouge'"):
        generation_scores(["а"], ["б"], metric="meteor")


def test_unicode_word_tokenizer_and_several_references():
    tokenize = UnicodeWordTokenizer().tokenize
    assert tokenize("Ёжик, ПРИВЕТ! Дом-2 и snake_case; мо\u0301локо") == \
        ["ёжик", "привет", "дом", "2", "и", "snake", "case", "мо\u0301локо"]
    # With several references each example takes the best one.
    scores = rouge_scores(["кот спит"], [["собака лает", "кот спит"]])
    assert scores == pytest.approx({"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0})
