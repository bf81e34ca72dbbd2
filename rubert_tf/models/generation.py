"""Autoregressive search in pure TensorFlow ops: greedy, sampling (temperature / top-k / top-p) and
beam search, each one `tf.while_loop` with static shapes, so it runs inside `tf.function`, XLA and
an exported SavedModel alike.

The searches know nothing about the model. They call
    next_logits(state, sequences, index) -> (logits [N, V] for the token after `index`, new state)
where `state` is a tuple of tensors with the batch on axis 0 (the key/value caches; beam search
reorders it with tf.gather), and `sequences` [N, max_length] holds the tokens so far.

Semantics follow transformers' `generate` (v5) so that outputs are token-identical:
  - `max_length` counts the decoder start token; `min_length` too (HF's MinLengthLogitsProcessor);
  - greedy pads finished rows with pad_token_id;
  - beam search is HF's vectorised beam search: 2 * num_beams candidates per step, finished
    hypotheses scored sum_logprobs / generated_length ** length_penalty, `early_stopping`
    True (stop once num_beams hypotheses are finished), False (stop when the best running beam,
    at its current length, cannot beat the worst finished one) or "never" (the same bound taken at
    max_length when length_penalty > 0).
"""

import dataclasses

import tensorflow as tf

_NEG = -1.0e9  # HF's "never pick this" score in beam search (finite, so sums stay ordered)


@dataclasses.dataclass(frozen=True)
class GenerationConfig:
    max_length: int = 64
    min_length: int = 0
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: object = False
    no_repeat_ngram_size: int = 0
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    use_cache: bool = True

    def __post_init__(self):
        def check(name, ok, expected):
            if not ok:
                raise ValueError(f"generation `{name}` must be {expected}, got {getattr(self, name)!r}")

        def is_int(value):
            return isinstance(value, int) and not isinstance(value, bool)

        check("max_length", is_int(self.max_length) and self.max_length >= 2,
              "an int >= 2 (it counts the decoder start token)")
        check("min_length", is_int(self.min_length) and 0 <= self.min_length <= self.max_length,
              f"an int in 0..max_length ({self.max_length})")
        check("num_beams", is_int(self.num_beams) and self.num_beams >= 1, "an int >= 1")
        check("length_penalty", isinstance(self.length_penalty, (int, float)), "a number")
        check("early_stopping", self.early_stopping in (True, False, "never"), 'True, False or "never"')
        check("no_repeat_ngram_size", is_int(self.no_repeat_ngram_size) and self.no_repeat_ngram_size >= 0,
              "an int >= 0")
        check("temperature", isinstance(self.temperature, (int, float)) and self.temperature > 0, "a number > 0")
        check("top_k", is_int(self.top_k) and self.top_k >= 0, "an int >= 0 (0 = off)")
        check("top_p", isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1, "a number in (0, 1]")
        check("do_sample", isinstance(self.do_sample, bool), "a bool")
        check("use_cache", isinstance(self.use_cache, bool), "a bool")
        if self.do_sample and self.num_beams > 1:
            raise ValueError("do_sample=True with num_beams > 1 (beam sampling) is not supported; "
                             "use num_beams=1 for sampling")


def _write_column(sequences, index, values):
    """sequences[..., index] = values, with static shapes (a one-hot select, XLA-friendly)."""
    width = tf.shape(sequences)[-1]
    column = tf.equal(tf.range(width), index)
    return tf.where(column, tf.expand_dims(tf.cast(values, sequences.dtype), -1), sequences)


def _banned_ngram_tokens(sequences, cur_len, n, vocab_size):
    """[N, V] bool: tokens that would repeat an n-gram of sequences[:, :cur_len] (HF's NoRepeatNGram)."""
    width = sequences.shape[-1]
    starts = width - n + 1
    if starts <= 0:
        return tf.zeros([tf.shape(sequences)[0], vocab_size], tf.bool)
    # The last n-1 tokens, and every earlier window of n-1 tokens followed by a candidate token.
    prefix_positions = tf.maximum(cur_len - (n - 1) + tf.range(n - 1), 0)
    prefix = tf.gather(sequences, prefix_positions, axis=1)  # [N, n-1]
    window_positions = tf.range(starts)[:, None] + tf.range(n - 1)[None, :]  # [S, n-1]
    windows = tf.gather(sequences, window_positions, axis=1)  # [N, S, n-1]
    same = tf.reduce_all(tf.equal(windows, prefix[:, None, :]), axis=-1)  # [N, S]
    # The window plus its next token must lie inside the tokens generated so far.
    same &= tf.range(starts)[None, :] <= cur_len - n
    followers = sequences[:, n - 1:]  # token after window s is at s + n - 1
    rows = tf.broadcast_to(tf.range(tf.shape(sequences)[0])[:, None], tf.shape(followers))
    indices = tf.stack([tf.boolean_mask(rows, same), tf.boolean_mask(followers, same)], axis=-1)
    hits = tf.scatter_nd(indices, tf.ones([tf.shape(indices)[0]], tf.int32),
                         [tf.shape(sequences)[0], vocab_size])
    return hits > 0


def process_scores(scores, sequences, cur_len, config, eos_token_id):
    """HF's logits processors that change which tokens are allowed (applied to logits for greedy and
    sampling, to log-probabilities for beam search, as HF does)."""
    vocab_size = tf.shape(scores)[-1]
    if config.no_repeat_ngram_size > 0:
        banned = _banned_ngram_tokens(sequences, cur_len, config.no_repeat_ngram_size, vocab_size)
        scores = tf.where(banned, tf.constant(float("-inf"), scores.dtype), scores)
    if config.min_length > 0:
        is_eos = tf.equal(tf.range(vocab_size), eos_token_id)[None, :]
        scores = tf.where(is_eos & (cur_len < config.min_length), tf.constant(float("-inf"), scores.dtype), scores)
    return scores


def warp_for_sampling(scores, config):
    """Temperature, then top-k, then top-p (nucleus), in HF's order; removed tokens get -inf."""
    if config.temperature != 1.0:
        scores = scores / config.temperature
    if config.top_k > 0:
        k = tf.minimum(config.top_k, tf.shape(scores)[-1])
        kth = tf.math.top_k(scores, k).values[:, -1:]
        scores = tf.where(scores < kth, float("-inf"), scores)
    if config.top_p < 1.0:
        order = tf.argsort(scores, axis=-1, direction="DESCENDING", stable=True)
        sorted_scores = tf.gather(scores, order, batch_dims=1)
        mass_before = tf.math.cumsum(tf.nn.softmax(sorted_scores, axis=-1), axis=-1, exclusive=True)
        # Keep the smallest prefix whose mass reaches top_p (always at least the best token).
        remove_sorted = mass_before >= config.top_p
        remove = tf.scatter_nd(
            tf.stack([tf.broadcast_to(tf.range(tf.shape(scores)[0])[:, None], tf.shape(order)), order], -1),
            tf.cast(remove_sorted, tf.int32), tf.shape(order)) > 0
        scores = tf.where(remove, float("-inf"), scores)
    return scores


def greedy_search(next_logits, state, sequences, config, eos_token_id, pad_token_id, seed=None):
    """Greedy decoding (or sampling with `config.do_sample`). `sequences` [N, max_length] holds the
    start token in column 0. Returns (sequences [N, max_length], lengths [N] incl. the start token)."""
    batch = tf.shape(sequences)[0]
    max_length = config.max_length
    if config.do_sample:
        seed = tf.zeros([], tf.int32) if seed is None else tf.cast(seed, tf.int32)

    def keep_going(cur_len, sequences, finished, state):
        return (cur_len < max_length) & tf.logical_not(tf.reduce_all(finished))

    def step(cur_len, sequences, finished, state):
        logits, state = next_logits(state, sequences, cur_len - 1)
        scores = process_scores(tf.cast(logits, tf.float32), sequences, cur_len, config, eos_token_id)
        if config.do_sample:
            scores = warp_for_sampling(scores, config)
            tokens = tf.random.stateless_categorical(scores, 1, seed=tf.stack([seed, cur_len]),
                                                     dtype=tf.int32)[:, 0]
        else:
            tokens = tf.argmax(scores, axis=-1, output_type=tf.int32)
        tokens = tf.where(finished, pad_token_id, tokens)
        sequences = _write_column(sequences, cur_len, tokens)
        finished |= tf.equal(tokens, eos_token_id)
        return cur_len + 1, sequences, finished, state

    # The first eos of a row ends it; the rest of the row is padding.
    _, sequences, _, _ = tf.while_loop(
        keep_going, step, (tf.constant(1), sequences, tf.zeros([batch], tf.bool), state),
        maximum_iterations=max_length - 1)
    is_eos = tf.equal(sequences[:, 1:], eos_token_id)
    first_eos = tf.argmax(tf.cast(is_eos, tf.int32), axis=-1, output_type=tf.int32) + 2
    lengths = tf.where(tf.reduce_any(is_eos, axis=-1), first_eos, max_length)
    return sequences, lengths


def _length_divisor(length, length_penalty):
    # length ** lp in float64 then float32: what HF's Python-float divisor becomes.
    return tf.cast(tf.pow(tf.cast(length, tf.float64), float(length_penalty)), tf.float32)


def beam_search(next_logits, state, sequences, config, eos_token_id, pad_token_id):
    """HF's vectorised beam search. `sequences` [B * K, max_length] holds the start token in column 0
    (rows b*K .. b*K+K-1 belong to example b); `state` rows likewise. Returns the best finished
    hypothesis per example: (sequences [B, max_length], lengths [B], scores [B])."""
    beams = config.num_beams
    max_length = config.max_length
    keep = 2 * beams  # candidates per step: enough to continue even if `beams` of them just ended
    batch = tf.shape(sequences)[0] // beams
    lp, early_stopping = config.length_penalty, config.early_stopping

    def unflat(x):
        return tf.reshape(x, tf.concat([[batch, beams], tf.shape(x)[1:]], 0))

    def flat(x):
        return tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0))

    running = unflat(sequences)  # [B, K, L]
    running_scores = tf.tile(tf.constant([[0.0] + [_NEG] * (beams - 1)]), [batch, 1])  # only beam 0 is live
    finished_sequences = running
    finished_scores = tf.fill([batch, beams], _NEG)
    finished_lengths = tf.fill([batch, beams], max_length)
    is_finished = tf.zeros([batch, beams], tf.bool)
    improvable = tf.ones([batch, 1], tf.bool)
    in_top_beams = tf.range(keep) < beams

    def keep_going(cur_len, unfinished, *unused):
        return unfinished

    def step(cur_len, unfinished, running, running_scores, finished_sequences, finished_scores,
             finished_lengths, is_finished, improvable, state):
        flat_running = flat(running)
        logits, state = next_logits(state, flat_running, cur_len - 1)
        log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
        log_probs = process_scores(log_probs, flat_running, cur_len, config, eos_token_id)
        vocab_size = tf.shape(log_probs)[-1]
        log_probs = unflat(log_probs) + running_scores[:, :, None]
        log_probs = tf.reshape(log_probs, [batch, beams * vocab_size])

        # Top 2K continuations over all beams of an example.
        top_scores, top_indices = tf.math.top_k(log_probs, keep)
        source_beam = top_indices // vocab_size
        tokens = top_indices % vocab_size
        candidates = _write_column(tf.gather(running, source_beam, batch_dims=1), cur_len, tokens)
        ended = tf.equal(tokens, eos_token_id) | (cur_len + 1 >= max_length)

        # The best K candidates that did not end keep running.
        live_scores = top_scores + tf.cast(ended, tf.float32) * _NEG
        next_beams = tf.math.top_k(live_scores, beams).indices
        running = tf.gather(candidates, next_beams, batch_dims=1)
        running_scores = tf.gather(live_scores, next_beams, batch_dims=1)
        rows = tf.gather(source_beam, next_beams, batch_dims=1) + tf.range(batch)[:, None] * beams
        state = tuple(tf.gather(tensor, tf.reshape(rows, [-1])) for tensor in state)

        # Candidates among the top K that ended join the finished set if they beat its worst.
        just_finished = ended & in_top_beams[None, :]
        scores = top_scores / _length_divisor(cur_len, lp)
        if early_stopping is True:
            full = tf.reduce_all(is_finished, axis=-1, keepdims=True)
            scores += tf.cast(full, tf.float32) * _NEG
        scores += tf.cast(tf.logical_not(improvable), tf.float32) * _NEG
        scores += tf.cast(tf.logical_not(just_finished), tf.float32) * _NEG
        merged_scores = tf.concat([finished_scores, scores], axis=1)
        best = tf.math.top_k(merged_scores, beams).indices
        finished_sequences = tf.gather(tf.concat([finished_sequences, candidates], 1), best, batch_dims=1)
        finished_scores = tf.gather(merged_scores, best, batch_dims=1)
        finished_lengths = tf.gather(
            tf.concat([finished_lengths, tf.fill([batch, keep], cur_len + 1)], 1), best, batch_dims=1)
        is_finished = tf.gather(tf.concat([is_finished, just_finished], 1), best, batch_dims=1)

        # Could a running beam still beat the worst finished hypothesis?
        cur_len += 1
        if early_stopping == "never" and lp > 0.0:
            best_length = tf.constant(max_length - 1)
        else:
            best_length = cur_len - 1
        best_possible = running_scores[:, :1] / _length_divisor(best_length, lp)
        worst = tf.where(is_finished, tf.reduce_min(finished_scores, axis=1, keepdims=True), _NEG)
        improvable &= tf.reduce_any(best_possible > worst, axis=-1, keepdims=True)

        unfinished = tf.reduce_any(improvable) & tf.logical_not(tf.reduce_all(ended))
        if early_stopping is True:
            unfinished &= tf.logical_not(tf.reduce_all(is_finished))
        return (cur_len, unfinished, running, running_scores, finished_sequences, finished_scores,
                finished_lengths, is_finished, improvable, state)

    loop_vars = (tf.constant(1), tf.constant(True), running, running_scores, finished_sequences, finished_scores,
                 finished_lengths, is_finished, improvable, tuple(state))
    result = tf.while_loop(keep_going, step, loop_vars, maximum_iterations=max_length - 1)
    _, _, _, _, finished_sequences, finished_scores, finished_lengths, _, _, _ = result
    best_sequences = finished_sequences[:, 0]
    lengths = finished_lengths[:, 0]
    # Hypotheses are copied when they end, so past their length there is only the initial padding;
    # the mask makes that explicit for the unfinished placeholders (score -1e9) too.
    inside = tf.range(max_length)[None, :] < lengths[:, None]
    best_sequences = tf.where(inside, best_sequences, pad_token_id)
    return best_sequences, lengths, finished_scores[:, 0]
