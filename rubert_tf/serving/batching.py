"""Dynamic batching (--enable_batching): concurrent requests for the same servable and signature are
concatenated along dim 0, run once, and the outputs split back.

As TF Serving's BasicBatchScheduler: a batch closes when it reaches `max_batch_size` rows or when its
oldest request has waited `batch_timeout_micros` (0: take whatever is queued as soon as a batch thread is
free); `num_batch_threads` batches run at once; more than `max_enqueued_batches` full batches waiting is
UNAVAILABLE. Only requests whose tensors share dtypes and trailing shapes are merged. If a merged run fails,
or an output is not batch-major, each request is run on its own, so one request never sees another's error.
"""

import collections
import threading
import time

import numpy as np

from rubert_tf.serving.errors import StatusError, from_exception


class _Task:
    __slots__ = ("inputs", "size", "enqueued", "done", "result", "error")

    def __init__(self, inputs, size):
        self.inputs = inputs
        self.size = size
        self.enqueued = time.monotonic()
        self.done = threading.Event()
        self.result = None
        self.error = None


class _Queue:
    def __init__(self, runner):
        self.runner = runner
        self.tasks = collections.deque()
        self.rows = 0


class BatchScheduler:
    def __init__(self, max_batch_size=1000, batch_timeout_micros=0, num_batch_threads=2, max_enqueued_batches=100):
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self.max_batch_size = int(max_batch_size)
        self.timeout = max(0, batch_timeout_micros) / 1e6
        self.max_enqueued_rows = max(1, max_enqueued_batches) * self.max_batch_size
        self._cond = threading.Condition()
        self._queues = collections.OrderedDict()   # key -> _Queue
        self._enqueued_rows = 0
        self._stopped = False
        self.batches_run = 0
        self.requests_batched = 0
        self.largest_batch = 0
        self._threads = [threading.Thread(target=self._work, name=f"batch-{i}", daemon=True)
                         for i in range(max(1, num_batch_threads))]
        for thread in self._threads:
            thread.start()

    def run(self, servable, signature_name, runner, inputs):
        """Queue `inputs` ({name: array}, same dim 0) and wait for this request's slice of the outputs."""
        size = next(iter(inputs.values())).shape[0]
        shapes = tuple(sorted((name, a.dtype.str, a.shape[1:]) for name, a in inputs.items()))
        key = (id(servable), servable.name, servable.version, signature_name, shapes)
        task = _Task(inputs, size)
        with self._cond:
            if self._stopped:
                raise StatusError("UNAVAILABLE", "The batch scheduler is shutting down")
            if self._enqueued_rows + size > self.max_enqueued_rows:
                raise StatusError("UNAVAILABLE", "The batch scheduling queue to which this task was submitted is full")
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = _Queue(runner)
                queue.servable = servable   # keeps the version loaded until its queue drains
            queue.tasks.append(task)
            queue.rows += size
            self._enqueued_rows += size
            self._cond.notify()
        task.done.wait()
        if task.error is not None:
            raise task.error
        return task.result

    def _take_batch(self):
        """A ready batch (queue, tasks), or (None, seconds until the next one is due)."""
        now = time.monotonic()
        wait = None
        for key, queue in list(self._queues.items()):
            if not queue.tasks:
                del self._queues[key]
                continue
            due = queue.tasks[0].enqueued + self.timeout
            if queue.rows >= self.max_batch_size or now >= due:
                tasks, rows = [], 0
                while queue.tasks and rows + queue.tasks[0].size <= self.max_batch_size:
                    task = queue.tasks.popleft()
                    tasks.append(task)
                    rows += task.size
                queue.rows -= rows
                self._enqueued_rows -= rows
                self._queues.move_to_end(key)   # round-robin between models and signatures
                return queue, tasks
            wait = due - now if wait is None else min(wait, due - now)
        return None, wait

    def _work(self):
        while True:
            with self._cond:
                while True:
                    if self._stopped and not self._queues:
                        return
                    queue, tasks = self._take_batch()
                    if queue is not None:
                        break
                    self._cond.wait(timeout=tasks)
            self._execute(queue.runner, tasks)

    def _execute(self, runner, tasks):
        if len(tasks) == 1:
            self._run_alone(runner, tasks[0])
            return
        names = list(tasks[0].inputs)
        merged = {name: np.concatenate([t.inputs[name] for t in tasks], axis=0) for name in names}
        total = sum(t.size for t in tasks)
        try:
            outputs = runner(merged)
            if any(np.ndim(v) == 0 or np.shape(v)[0] != total for v in outputs.values()):
                raise ValueError("an output is not batch-major")
        except Exception:
            for task in tasks:
                self._run_alone(runner, task)
            return
        with self._cond:
            self.batches_run += 1
            self.requests_batched += len(tasks)
            self.largest_batch = max(self.largest_batch, total)
        start = 0
        for task in tasks:
            task.result = {name: value[start:start + task.size] for name, value in outputs.items()}
            start += task.size
            task.done.set()

    @staticmethod
    def _run_alone(runner, task):
        try:
            task.result = runner(task.inputs)
        except Exception as error:
            task.error = from_exception(error)
        task.done.set()

    def stats(self):
        with self._cond:
            return {"batches": self.batches_run, "requests_in_batches": self.requests_batched,
                    "largest_batch": self.largest_batch}

    def stop(self):
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)
