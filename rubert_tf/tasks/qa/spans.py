"""Start/end logits of all windows -> one answer per question, in the graph (TF ops only, servable).

A span is valid when it lies in the context of one window, start <= end, and it has at most
`max_answer_length` tokens; its score is start_logit + end_logit, and the best valid span over all the
question's windows wins (HF run_qa's rule, searched exhaustively; ties go to the earlier window, then
the shorter span, then the earlier start). SQuAD v2: the null score is start_logit + end_logit at [CLS],
the smallest over the question's windows (as run_qa), and the answer is "" when
null_score - best_score > no_answer_threshold. Scores are summed in float64, so the choice does not
depend on float32 rounding. rubert_tf.data.qa.decode_answers is the numpy reference of this rule.
"""

import numpy as np
import tensorflow as tf


def segment_min(values, segment_ids, count):
    """unsorted_segment_min as -max(-x): the same numbers, with the ops every exported task uses."""
    return -tf.math.unsorted_segment_max(-values, segment_ids, count)


def postprocessor(settings):
    """A graph function (windows, start_logits, end_logits, context) -> per question:

        answer      string [B]   context[start:end] (code points), "" when there is no answer
        start, end  int32 [B]    code-point offsets into the context, -1 when there is no answer
        score       float32 [B]  the best span's score; the null score when there is no answer
        null_score  float32 [B]  the [CLS] score (min over windows)
        windows, truncated       passed on from the preprocessor
    """
    # A span never has more tokens than a window.
    span_lengths = min(settings.max_answer_length, settings.max_length)
    allow_no_answer, threshold = settings.version_2_with_negative, settings.no_answer_threshold

    @tf.autograph.experimental.do_not_convert  # plain TF ops: autograph's conversion is not needed
    def postprocess(windows, start_logits, end_logits, context):
        start_logits = tf.cast(start_logits, tf.float64)
        end_logits = tf.cast(end_logits, tf.float64)
        mask = windows["context_mask"]
        example_index = windows["example_index"]
        questions = tf.shape(context)[0]
        count, width = tf.shape(mask)[0], tf.shape(mask)[1]

        # scores[w, d, i] = start[w, i] + end[w, i + d]: the span of d + 1 tokens starting at i.
        minus_inf = tf.constant(-np.inf, tf.float64)
        starts = tf.where(mask, start_logits, minus_inf)
        ends = tf.where(mask, end_logits, minus_inf)
        ends = tf.concat([ends, tf.fill([count, span_lengths], minus_inf)], axis=1)
        scores = starts[:, tf.newaxis, :] + tf.stack([ends[:, d:d + width] for d in range(span_lengths)], axis=1)
        flat = tf.reshape(scores, [count, -1])
        best = tf.argmax(flat, axis=-1, output_type=tf.int32)
        window_score = tf.reduce_max(flat, axis=-1)
        first_token = best % width
        last_token = first_token + best // width

        # Best window of each question: the highest score, the first such window on ties.
        best_score = tf.math.unsorted_segment_max(window_score, example_index, questions)
        is_best = window_score >= tf.gather(best_score, example_index)
        position = tf.range(count)
        best_window = segment_min(tf.where(is_best, position, count), example_index, questions)
        # No valid span at all (every score -inf): keep the index in range; `found` drops the answer.
        best_window = tf.minimum(best_window, tf.maximum(count - 1, 0))

        null = start_logits[:, 0] + end_logits[:, 0]
        null_score = segment_min(null, example_index, questions)
        # (Not `best_score > -inf`: a segment max starts from the lowest finite float, not from -inf.)
        found = tf.math.unsorted_segment_max(tf.cast(window_score > minus_inf, tf.int32), example_index,
                                             questions) > 0
        if allow_no_answer:
            found &= ~(null_score - best_score > threshold)

        # Offsets of the best span's tokens, as flat [W * T] indices.
        offsets = tf.reshape(windows["offsets"], [-1, 2])
        char_start = tf.gather(offsets[:, 0], best_window * width + tf.gather(first_token, best_window))
        char_end = tf.gather(offsets[:, 1], best_window * width + tf.gather(last_token, best_window))
        char_start = tf.where(found, char_start, -1)
        char_end = tf.where(found, char_end, -1)
        text = tf.strings.substr(context, tf.maximum(char_start, 0), tf.maximum(char_end - char_start, 0),
                                 unit="UTF8_CHAR")
        return {
            "answer": tf.where(found, text, ""),
            "start": char_start,
            "end": char_end,
            "score": tf.cast(tf.where(found, best_score, null_score), tf.float32),
            "null_score": tf.cast(null_score, tf.float32),
            "windows": windows["windows"],
            "truncated": windows["truncated"],
        }

    return postprocess
