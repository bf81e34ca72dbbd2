"""(question, context) string batches -> strided windows, in the graph (TF ops only, servable).

Each window is `[CLS] question [SEP] context-piece [SEP]`, exactly as HF BertTokenizerFast makes them
with `truncation="only_second", stride=..., return_overflowing_tokens=True` (and as
rubert_tf.data.qa.encode_qa_windows builds training windows): the context is cut into pieces of
`budget = max_length - 3 - question_tokens` tokens starting every `budget - stride` tokens, so
neighbouring pieces share `stride` tokens and the last piece ends with the context. A question keeps at
most `settings.question_cap` tokens. At most `max_windows` windows per question: the pieces after them
are not searched, and `truncated` says so.
"""

import tensorflow as tf

from rubert_tf.tokenizer import bounded_prefix

MODEL_INPUTS = ("token_ids", "segment_ids", "padding_mask")


def _gather_rows(flat_values, first, count, col, column0):
    """values[first + col - column0] where column0 <= col < column0 + count (0 elsewhere); first, count,
    column0: [W, 1]; col: [1, T]."""
    index = first + col - column0
    # The appended 0 keeps the gather valid outside the part (masked away by the caller).
    index = tf.where((col >= column0) & (col < column0 + count), index, tf.size(flat_values))
    return tf.gather(tf.concat([flat_values, [0]], 0), index)


def preprocessor(tokenizer, settings):
    """A graph function (question, context) -> dict of window tensors, W windows of B questions:

        token_ids, segment_ids, padding_mask  int32 [W, T]  model inputs (T: the longest window)
        offsets         int32 [W, T, 2]  code-point offsets of each token into its own text (question
                                         tokens into the question, context tokens into the context),
                                         (0, 0) for [CLS]/[SEP]/padding
        context_mask    bool [W, T]      True on context tokens
        example_index   int32 [W]        the question each window belongs to
        windows         int32 [B]        windows per question
        truncated       bool [B]         the context needed more than max_windows windows
    """
    max_length, stride, max_windows = settings.max_length, settings.window_stride, settings.max_windows
    question_cap = settings.question_cap
    cls_id, sep_id, pad_id = tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id

    @tf.autograph.experimental.do_not_convert  # plain TF ops: autograph's conversion is not needed
    def preprocess(question, context):
        tf.debugging.assert_equal(tf.shape(question)[0], tf.shape(context)[0],
                                  message="`question` and `context` differ in batch size")
        # Only what max_windows windows can use is tokenized (a 50 MB context costs what its first windows
        # cost); one token more than they cover keeps `truncated` exact.
        q_ids, q_starts, q_ends = tokenizer.tokenize_with_offsets(bounded_prefix(question, question_cap))
        c_ids, c_starts, c_ends = tokenizer.tokenize_with_offsets(
            bounded_prefix(context, max_windows * max_length + 1))
        q_len = tf.minimum(tf.cast(q_ids.row_lengths(), tf.int32), question_cap)
        c_len = tf.cast(c_ids.row_lengths(), tf.int32)
        budget = max_length - 3 - q_len  # context tokens per window; > stride by question_cap
        step = budget - stride
        # The tokenizers crate's Encoding::truncate: pieces start at 0, step, 2 step, ... until one
        # reaches the end of the context.
        needed = 1 + (tf.maximum(c_len - budget, 0) + step - 1) // step
        count = tf.minimum(needed, max_windows)

        example_index = tf.repeat(tf.range(tf.shape(c_len)[0]), count)
        piece = tf.ragged.range(count).flat_values
        budget_w, c_len_w, q_len_w = (tf.gather(t, example_index) for t in (budget, c_len, q_len))
        begin = piece * tf.gather(step, example_index)
        c_count = tf.minimum(begin + budget_w, c_len_w) - begin
        width = tf.reduce_max(tf.concat([[3], q_len_w + c_count + 3], 0))

        col = tf.range(width)[tf.newaxis, :]
        q_count, c_count = q_len_w[:, tf.newaxis], c_count[:, tf.newaxis]
        q_first = tf.cast(tf.gather(q_ids.row_starts(), example_index), tf.int32)[:, tf.newaxis]
        c_first = (tf.cast(tf.gather(c_ids.row_starts(), example_index), tf.int32) + begin)[:, tf.newaxis]
        q_col0, c_col0 = 1, q_count + 2  # first column of the question / of the context piece
        in_question = (col >= q_col0) & (col < q_col0 + q_count)
        in_context = (col >= c_col0) & (col < c_col0 + c_count)
        is_sep = (col == q_count + 1) | (col == c_col0 + c_count)

        def question_part(values):
            return _gather_rows(values.flat_values, q_first, q_count, col, q_col0)

        def context_part(values):
            return _gather_rows(values.flat_values, c_first, c_count, col, c_col0)

        token_ids = tf.where(in_question, question_part(q_ids), context_part(c_ids))
        token_ids = tf.where(is_sep, sep_id, token_ids)
        token_ids = tf.where(col == 0, cls_id, token_ids)
        real = col <= c_col0 + c_count
        token_ids = tf.where(real, token_ids, pad_id)
        starts = question_part(q_starts) + context_part(c_starts)  # each is 0 outside its part
        ends = question_part(q_ends) + context_part(c_ends)
        return {
            "token_ids": token_ids,
            "segment_ids": tf.cast(in_context | (col == c_col0 + c_count), tf.int32),
            "padding_mask": tf.cast(real, tf.int32),
            "offsets": tf.stack([starts, ends], axis=-1),
            "context_mask": in_context,
            "example_index": example_index,
            "windows": count,
            "truncated": needed > max_windows,
        }

    return preprocess
