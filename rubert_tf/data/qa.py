"""Extractive QA data: question/context pairs -> overlapping windows -> spans -> answers.

    windows = encode_qa_windows(tokenizer, questions, contexts, max_length=384, stride=128, answers=answers)
    dataset = qa_training_dataset(tokenizer, examples, batch_size=32, max_length=384, stride=128)
    answers = decode_answers(windows, start_logits, end_logits, contexts)  # numpy reference decoding

Each window is `[CLS] question [SEP] context-piece [SEP]`, exactly as HF BertTokenizerFast makes them
with `truncation="only_second", stride=..., return_overflowing_tokens=True`: the context is cut into
pieces of `budget = max_length - 3 - len(question)` tokens starting every `budget - stride` tokens, so
neighbouring pieces share `stride` tokens, and the last piece ends with the context. A question longer
than `max_question_length` tokens keeps only its first tokens (HF would fail instead).

Offsets are code-point offsets into the original strings (the tokenizer's), so the answer text is
`context[start:end]` exactly as it stands there, even where the tokenizer dropped characters such as a
leading U+FEFF.

These are the training windows (with their answer targets), built in Python; inference builds the same
windows in the graph (rubert_tf.tasks.qa.windows), and tests check that both are equal.
"""

import numpy as np
import tensorflow as tf

from rubert_tf.data.batching import batch_examples

# tokens; the value of HF's legacy SQuAD scripts (max_query_length), as in rubert_tf.tasks.qa.settings
MAX_QUESTION_LENGTH = 64


def _as_lists(ragged):
    """tf.RaggedTensor [B, None] -> list of B int numpy arrays (one copy, then views)."""
    values = ragged.flat_values.numpy()
    splits = ragged.row_splits.numpy()
    return [values[splits[i]:splits[i + 1]] for i in range(len(splits) - 1)]


def _tokenize(tokenizer, texts):
    """Unique texts are tokenized once: [(ids, starts, ends)] aligned with `texts`."""
    unique = list(dict.fromkeys(texts))
    if not unique:
        return []
    ids, starts, ends = (_as_lists(t) for t in tokenizer.tokenize_with_offsets(unique))
    by_text = {text: (ids[i], starts[i], ends[i]) for i, text in enumerate(unique)}
    return [by_text[text] for text in texts]


def _first_answer(answer):
    """None / {"text", "answer_start"} / a list of those (the first is used) -> dict or None."""
    if answer is None:
        return None
    if isinstance(answer, (list, tuple)):
        return answer[0] if answer else None
    return answer


def _answer_chars(answer, context, index, ids):
    """(start_char, end_char) of a training answer, checked against its context."""
    name = f"question {ids[index]!r}" if ids is not None else f"example {index}"
    text, start = answer.get("text"), answer.get("answer_start")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{name}: empty answer text {text!r} (a question without an answer needs "
                         "answers=None / [] and SQuAD v2 mode)")
    if not isinstance(start, (int, np.integer)) or isinstance(start, bool) or start < 0 \
            or context[start:start + len(text)] != text:
        found = context[start:start + len(text)] if isinstance(start, (int, np.integer)) and start >= 0 else None
        raise ValueError(f"{name}: answer {text!r} is not at answer_start={start} of its context "
                         f"(found {found!r})")
    return int(start), int(start) + len(text)


def window_starts(length, budget, stride):
    """Token offsets of the context pieces (the `tokenizers` crate's Encoding::truncate, Right)."""
    if length <= budget:
        return [0]
    step = budget - stride
    starts = []
    for start in range(0, length, step):
        starts.append(start)
        if start + budget >= length:
            break
    return starts


def _answer_tokens(starts, ends, start_char, end_char):
    """(first, last) token of a piece that covers [start_char, end_char), or None if it does not.

    As HF run_qa: the piece contains the answer when its first token starts at or before the answer
    and its last token ends at or after it; the span runs from the last token starting at or before
    the answer's first char to the first token ending at or after its end.
    """
    if len(starts) == 0 or starts[0] > start_char or ends[-1] < end_char:
        return None
    first = int(np.searchsorted(starts, start_char, side="right")) - 1
    last = int(np.searchsorted(ends, end_char, side="left"))
    return first, max(first, last)


def encode_qa_windows(tokenizer, questions, contexts, max_length=384, stride=128, answers=None,
                      max_question_length=MAX_QUESTION_LENGTH, ids=None):
    """Tokenize question/context pairs into windows of at most `max_length` tokens.

    answers: optional, one per example: None (no answer, SQuAD v2), {"text", "answer_start"}, or a
        SQuAD list of them (the first is the training target). Gives `start_positions`/`end_positions`:
        the answer's first/last token in each window, or 0/0 ([CLS]) when the window does not contain
        the whole answer or the question has none.
    ids: optional question ids, used only to name a bad example in errors.

    Returns a dict of numpy arrays, one row per window, padded to the longest window:
        token_ids, segment_ids, padding_mask  int32 [W, T]  model inputs
        offsets          int32 [W, T, 2]  char offsets of each token into its own text (question tokens
                                          into the question, context tokens into the context), (0, 0)
                                          for [CLS]/[SEP]/padding: HF's offset_mapping
        context_mask     bool [W, T]      True on context tokens (HF's sequence_ids == 1)
        example_index    int32 [W]        which example the window belongs to (HF overflow_to_sample_mapping)
        start_positions, end_positions  int32 [W]  (only with `answers`)
    """
    if isinstance(questions, str) or isinstance(contexts, str):
        raise TypeError("`questions` and `contexts` must be lists of strings (one pair per example)")
    questions, contexts = list(questions), list(contexts)
    if len(questions) != len(contexts):
        raise ValueError(f"{len(questions)} questions but {len(contexts)} contexts")
    if answers is not None and len(answers) != len(questions):
        raise ValueError(f"{len(answers)} answers but {len(questions)} questions")
    if stride < 0:
        raise ValueError(f"stride must be >= 0, got {stride}")
    # The context piece must be longer than the stride, or the windows would not move on.
    question_cap = min(max_question_length, max_length - 3 - (stride + 1))
    if question_cap < 1:
        raise ValueError(f"max_length={max_length} leaves no room for a question and a context piece longer "
                         f"than stride={stride} ([CLS] question [SEP] context [SEP]); use a larger max_length "
                         "or a smaller stride")

    question_tokens = _tokenize(tokenizer, questions)
    context_tokens = _tokenize(tokenizer, contexts)
    rows = []  # (example, question ids/starts/ends, context slice start, stop, start/end position)
    for index, ((q_ids, q_starts, q_ends), (c_ids, c_starts, c_ends)) in enumerate(
            zip(question_tokens, context_tokens)):
        q_len = min(len(q_ids), question_cap)
        budget = max_length - 3 - q_len
        answer = _first_answer(answers[index]) if answers is not None else None
        chars = _answer_chars(answer, contexts[index], index, ids) if answer is not None else None
        for begin in window_starts(len(c_ids), budget, stride):
            stop = min(begin + budget, len(c_ids))
            span = None
            if chars is not None:
                span = _answer_tokens(c_starts[begin:stop], c_ends[begin:stop], *chars)
            if span is None:
                positions = (0, 0)
            else:  # window positions: [CLS] + question + [SEP] come first
                positions = (span[0] + q_len + 2, span[1] + q_len + 2)
            rows.append((index, q_len, begin, stop, positions))

    width = max([q_len + (stop - begin) + 3 for _, q_len, begin, stop, _ in rows], default=0)
    count = len(rows)
    token_ids = np.full((count, width), tokenizer.pad_id, np.int32)
    segment_ids = np.zeros((count, width), np.int32)
    padding_mask = np.zeros((count, width), np.int32)
    offsets = np.zeros((count, width, 2), np.int32)
    context_mask = np.zeros((count, width), bool)
    for row, (index, q_len, begin, stop, _) in enumerate(rows):
        q_ids, q_starts, q_ends = question_tokens[index]
        c_ids, c_starts, c_ends = context_tokens[index]
        c0, c1 = q_len + 2, q_len + 2 + stop - begin  # context columns [c0, c1)
        token_ids[row, 0] = tokenizer.cls_id
        token_ids[row, 1:q_len + 1] = q_ids[:q_len]
        token_ids[row, q_len + 1] = tokenizer.sep_id
        token_ids[row, c0:c1] = c_ids[begin:stop]
        token_ids[row, c1] = tokenizer.sep_id
        segment_ids[row, c0:c1 + 1] = 1
        padding_mask[row, :c1 + 1] = 1
        offsets[row, 1:q_len + 1, 0] = q_starts[:q_len]
        offsets[row, 1:q_len + 1, 1] = q_ends[:q_len]
        offsets[row, c0:c1, 0] = c_starts[begin:stop]
        offsets[row, c0:c1, 1] = c_ends[begin:stop]
        context_mask[row, c0:c1] = True
    windows = {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask,
               "offsets": offsets, "context_mask": context_mask,
               "example_index": np.array([r[0] for r in rows], np.int32)}
    if answers is not None:
        windows["start_positions"] = np.array([r[4][0] for r in rows], np.int32)
        windows["end_positions"] = np.array([r[4][1] for r in rows], np.int32)
    return windows


def decode_answers(windows, start_logits, end_logits, contexts, max_answer_length=30, allow_no_answer=False,
                   no_answer_threshold=0.0):
    """Best answer of every example from the logits of its windows.

    windows: the dict of `encode_qa_windows` (offsets, context_mask, example_index are used).
    start_logits, end_logits: [W, T'] arrays (or lists of [T'] rows), T' <= the windows' width; columns
        past T' count as absent.
    A span is valid when it lies in the context of one window, start <= end, and it has at most
    `max_answer_length` tokens; its score is start_logit + end_logit, and the best valid span over all
    windows of the example wins (HF run_qa's rule, searched exhaustively instead of over n-best lists).
    allow_no_answer (SQuAD v2): the null score is start_logit + end_logit at [CLS], the smallest over the
    example's windows (as run_qa); the answer is "" when null_score - best_score > no_answer_threshold.

    Returns one dict per context: {"answer": text, "start": char, "end": char, "score": float,
    "null_score": float}; text == contexts[i][start:end]. No answer: "", start/end None, score = null_score.

    The numpy reference of the served rule: rubert_tf.tasks.qa.spans.postprocessor does the same in the
    graph (what `RuBertQuestionAnswerer.answer` and exported models run); tests compare the two.
    """
    contexts = list(contexts)
    offsets, context_mask = windows["offsets"], windows["context_mask"]
    example_index = np.asarray(windows["example_index"])
    if len(start_logits) != len(example_index) or len(end_logits) != len(example_index):
        raise ValueError(f"{len(example_index)} windows but {len(start_logits)} start and "
                         f"{len(end_logits)} end logit rows")
    if max_answer_length < 1:
        raise ValueError(f"max_answer_length must be >= 1, got {max_answer_length}")
    best = [None] * len(contexts)  # (score, window, start token, end token)
    null = [None] * len(contexts)
    for window, example in enumerate(example_index):
        starts = np.asarray(start_logits[window], np.float64)
        ends = np.asarray(end_logits[window], np.float64)
        if starts.shape != ends.shape or starts.ndim != 1:
            raise ValueError(f"window {window}: start logits {starts.shape} and end logits {ends.shape} "
                             "must be equal 1-D rows")
        mask = context_mask[window][:len(starts)]
        null_score = float(starts[0] + ends[0]) if len(starts) else -np.inf
        if null[example] is None or null_score < null[example]:
            null[example] = null_score
        positions = np.flatnonzero(mask)
        if positions.size == 0:
            continue
        s = np.where(mask, starts[:len(mask)], -np.inf)
        e = np.where(mask, ends[:len(mask)], -np.inf)
        # scores[d, i] = s[i] + e[i + d]: spans of d + 1 tokens starting at i.
        length = len(mask)
        span = min(max_answer_length, length)
        padded_e = np.concatenate([e, np.full(span, -np.inf)])
        scores = s[None, :] + np.stack([padded_e[d:d + length] for d in range(span)])
        d, i = np.unravel_index(int(np.argmax(scores)), scores.shape)
        score = float(scores[d, i])
        if np.isfinite(score) and (best[example] is None or score > best[example][0]):
            best[example] = (score, window, int(i), int(i + d))
    results = []
    for example, context in enumerate(contexts):
        null_score = null[example] if null[example] is not None else float("-inf")
        if best[example] is None or (allow_no_answer and null_score - best[example][0] > no_answer_threshold):
            results.append({"answer": "", "start": None, "end": None, "score": null_score,
                            "null_score": null_score})
            continue
        score, window, first, last = best[example]
        start, end = int(offsets[window, first, 0]), int(offsets[window, last, 1])
        results.append({"answer": context[start:end], "start": start, "end": end, "score": score,
                        "null_score": null_score})
    return results


def qa_training_dataset(tokenizer, examples, batch_size, max_length=384, stride=128,
                        max_question_length=MAX_QUESTION_LENGTH, shuffle=False, seed=None,
                        allow_no_answer=False):
    """tf.data.Dataset of (features, {"start_logits": [B], "end_logits": [B]}) batches for model.fit.

    examples: dicts {"question", "context", "answers": [{"text", "answer_start"}], "id"?} (read_squad's).
    Windows are tokenized once, here in Python, then cached, shuffled and batched by `batch_examples`
    (each batch padded to its longest window, rounded up to a multiple of 8). A question without an
    answer is an error unless `allow_no_answer` (SQuAD v2): then all its windows point at [CLS].
    """
    answers = []
    for number, example in enumerate(examples):
        answer = _first_answer(example.get("answers"))
        if answer is None and not allow_no_answer:
            raise ValueError(f"question {example.get('id', number)!r} has no answer; SQuAD v2 data needs "
                             "allow_no_answer / --version-2-with-negative")
        answers.append(answer)
    windows = encode_qa_windows(tokenizer, [e["question"] for e in examples], [e["context"] for e in examples],
                                max_length=max_length, stride=stride, answers=answers,
                                max_question_length=max_question_length,
                                ids=[e.get("id", i) for i, e in enumerate(examples)])
    return windows_dataset(windows, batch_size, shuffle=shuffle, seed=seed), windows


def windows_dataset(windows, batch_size, shuffle=False, seed=None):
    """Training windows (with start/end positions) -> batched (features, labels) dataset."""
    lengths = windows["padding_mask"].sum(axis=1).astype(np.int32)
    features = {key: windows[key] for key in ("token_ids", "segment_ids", "padding_mask")}
    labels = {"start_logits": windows["start_positions"], "end_logits": windows["end_positions"]}
    dataset = tf.data.Dataset.from_tensor_slices((features, labels, lengths))
    dataset = dataset.map(lambda f, y, n: ({key: value[:n] for key, value in f.items()}, y),
                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return batch_examples(dataset, batch_size, shuffle=shuffle, seed=seed)
