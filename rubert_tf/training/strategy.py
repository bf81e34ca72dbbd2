"""One `strategy` choice for every task: where the replicas are, and how batch, learning rate,
gradient clipping and mixed precision follow from it.

    strategy = create_strategy("mirrored")            # all local GPUs (or logical CPUs)
    batch = global_batch_size(32, strategy)           # per-replica 32 -> global 32 * replicas
    with strategy.scope():
        model = RuBertClassifier.from_pretrained(path, num_labels=3)
        model.compile(optimizer=create_optimizer(...), loss=...)
    with keras_fixes.fixes_for(strategy):             # Keras patches a multi-replica fit needs
        model.fit(dataset.batch(batch), ...)         # tf.data batches are GLOBAL batches

Names: "default" (one device, TF's default strategy), "mirrored" (all local GPUs; on a CPU-only
machine `num_logical_cpus` splits the CPU into logical devices, which is how the tests run it),
"multi_worker" (MultiWorkerMirroredStrategy, cluster from the `TF_CONFIG` environment variable) and
"tpu" (TPUClusterResolver; `tpu=` or `$TPU_NAME`, "" means the local TPU VM).

Batch and learning rate. The batches of the tf.data pipeline given to `fit` are global batches: the
strategy splits each one over the replicas, and Keras divides every replica's loss by the number
of replicas, so the summed gradient is the mean over the global batch. Hence the same global batch
gives the same update on 1 or N replicas, and the learning rate stays the same
(tests/test_distributed.py checks this). `global_batch_size(per_replica, strategy)` turns a
per-replica batch into the global one; if you grow the global batch with the number of replicas,
`scaled_learning_rate` applies the linear scaling rule (Goyal et al., 2017: k times the batch, k times
the learning rate, with warmup) or, for Adam-style optimizers on large batches, the square-root rule.

Keras patches: with more than one replica Keras 3's optimizers clip, accumulate and check for
inf/nan each replica's partial gradient, and multi-worker `fit` fails (keras-team/keras#20585);
rubert_tf.training.keras_fixes holds the fixes. `create_strategy` patches nothing: wrap the `fit` in
`keras_fixes.fixes_for(strategy)` (the training runner does).

Gradient accumulation: `enable_gradient_accumulation(optimizer, steps)` before compile. Keras feeds the
learning-rate schedule the micro-batch counter; the helper wraps the schedule so that it counts
optimizer updates, and `steps` micro-batches of B then equal one batch of steps*B (clipping and
weight decay included), on one device or N replicas.

Mixed precision: `set_mixed_precision("auto")` before building the model picks mixed_float16 on GPUs
(Keras' compile then wraps the optimizer in a LossScaleOptimizer: dynamic loss scaling) and
mixed_bfloat16 on TPUs and CPUs; "bf16", "fp16", "fp32" force one. The models keep their logits and
losses in float32.
"""

import json
import logging
import os

import keras
import tensorflow as tf

logger = logging.getLogger(__name__)

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
_ALIASES = {"one_device": "default", "single": "default", "none": "default", "mirror": "mirrored",
            "multiworker": "multi_worker", "multi_worker_mirrored": "multi_worker"}


def create_strategy(name="default", num_logical_cpus=None, tpu=None):
    """A `tf.distribute.Strategy` by name (see the module docstring). Call it before building models
    and, with `num_logical_cpus`, before anything else touches TensorFlow devices."""
    key = (name or "default").strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in STRATEGIES:
        raise ValueError(f"strategy must be one of {list(STRATEGIES)}, got {name!r}")
    if num_logical_cpus and key in ("mirrored", "default"):
        split_cpu(num_logical_cpus)
    if key == "default":
        return tf.distribute.get_strategy()
    if key == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        if not devices:
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
            if len(devices) == 1:
                logger.warning("strategy 'mirrored': no GPU and one CPU device; pass num_logical_cpus=N to "
                               "split the CPU into N replicas")
        strategy = tf.distribute.MirroredStrategy(devices=devices)
    elif key == "multi_worker":
        _check_tf_config()
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(
                implementation=tf.distribute.experimental.CommunicationImplementation.AUTO))
    else:
        strategy = _tpu_strategy(tpu)
    logger.info("strategy %s: %d replicas in sync", key, strategy.num_replicas_in_sync)
    return strategy


def split_cpu(num_logical_cpus):
    """Split the first physical CPU into `num_logical_cpus` logical devices (CPU:0 ... CPU:N-1).

    Only possible before TensorFlow initialises its devices; afterwards a matching split is accepted
    and anything else raises, naming the fix."""
    num_logical_cpus = int(num_logical_cpus)
    if num_logical_cpus < 1:
        raise ValueError(f"num_logical_cpus must be >= 1, got {num_logical_cpus}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == num_logical_cpus:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(num_logical_cpus)])
    except RuntimeError as error:
        have = len(tf.config.list_logical_devices("CPU"))
        if have == num_logical_cpus:
            return
        raise RuntimeError(
            f"num_logical_cpus={num_logical_cpus}: TensorFlow is already initialised with {have} logical CPU "
            "device(s); call create_strategy(..., num_logical_cpus=...) before any other TensorFlow work "
            f"(or in a fresh process). TensorFlow said: {error}") from error


def _check_tf_config():
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        logger.warning("strategy 'multi_worker': TF_CONFIG is not set, so this process is a cluster of one worker")
        return
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        workers = cluster.get("worker", []) + cluster.get("chief", [])
        if not workers:
            raise KeyError("cluster.worker")
        if task["type"] not in cluster:
            raise KeyError(f"cluster.{task['type']}")
        if not 0 <= int(task["index"]) < len(cluster[task["type"]]):
            raise IndexError(f"task.index {task['index']} outside cluster.{task['type']}")
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise ValueError(f"TF_CONFIG is not a valid cluster description ({error!r}): {raw}") from error


def _tpu_strategy(tpu=None):
    """TPUStrategy on the TPU named by `tpu`, `$TPU_NAME`, or the local TPU VM (""). Not tested here."""
    name = tpu if tpu is not None else os.environ.get("TPU_NAME", "")
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=name)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        raise RuntimeError(f"strategy 'tpu': no TPU found for tpu={name!r} ({error})") from error
    return tf.distribute.TPUStrategy(resolver)


def worker_info(strategy=None):
    """(task_type, task_id, is_chief) of this process; ("worker", 0, True) when not multi-worker.

    From the strategy's cluster resolver, or, without a strategy (none given and none in scope), from
    `TF_CONFIG`. The chief is the `chief` task if the cluster has one, otherwise worker 0 (TF's rule)."""
    if strategy is None and tf.distribute.has_strategy():
        strategy = tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    if resolver is not None and getattr(resolver, "task_type", None):
        task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
        cluster = resolver.cluster_spec().as_dict()
    else:
        try:
            config = json.loads(os.environ.get("TF_CONFIG") or "{}")
        except ValueError:
            config = {}
        task, cluster = config.get("task") or {}, config.get("cluster") or {}
        if strategy is not None and not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            task = {}  # a one-machine strategy: TF_CONFIG is not about this run
        if not task.get("type"):
            return "worker", 0, True
        task_type, task_id = task["type"], int(task.get("index", 0))
    is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in cluster)
    return task_type, task_id, is_chief


def global_batch_size(per_replica_batch_size, strategy=None):
    """Global batch (what the tf.data pipeline batches to) for a per-replica batch."""
    strategy = strategy or tf.distribute.get_strategy()
    return int(per_replica_batch_size) * strategy.num_replicas_in_sync


def per_replica_batch_size(global_batch, strategy=None):
    """The inverse; the global batch must divide evenly, or replicas would weigh examples unequally."""
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if int(global_batch) % replicas:
        raise ValueError(f"global batch size {global_batch} is not divisible by the {replicas} replicas in sync")
    return int(global_batch) // replicas


def scaled_learning_rate(base_learning_rate, global_batch, base_batch_size, rule="linear"):
    """Learning rate for `global_batch` when `base_learning_rate` was tuned at `base_batch_size`.

    rule="linear": lr * global/base (Goyal et al. 2017; keep a warmup). rule="sqrt": lr * sqrt(global/base)
    (often better for Adam on large batches). rule="none": unchanged. Same global batch -> same lr.
    """
    ratio = float(global_batch) / float(base_batch_size)
    if rule == "linear":
        return base_learning_rate * ratio
    if rule == "sqrt":
        return base_learning_rate * ratio ** 0.5
    if rule in (None, "none"):
        return base_learning_rate
    raise ValueError(f"rule must be 'linear', 'sqrt' or 'none', got {rule!r}")


MIXED_PRECISION_POLICIES = {"bf16": "mixed_bfloat16", "mixed_bfloat16": "mixed_bfloat16",
                            "fp16": "mixed_float16", "mixed_float16": "mixed_float16",
                            "fp32": "float32", "float32": "float32", "no": "float32"}


def mixed_precision_policy(mode="auto", strategy=None):
    """Policy name for `mode`: "auto" -> mixed_float16 on GPU (Keras' compile then wraps the optimizer in
    a LossScaleOptimizer: dynamic loss scaling), mixed_bfloat16 on TPU and CPU (no scaling needed);
    or an explicit "bf16"/"fp16"/"fp32"/policy name. None/False -> "float32"."""
    if not mode:
        return "float32"
    if mode != "auto":
        if mode not in MIXED_PRECISION_POLICIES:
            raise ValueError(f"mixed precision must be 'auto' or one of {sorted(MIXED_PRECISION_POLICIES)}, "
                             f"got {mode!r}")
        return MIXED_PRECISION_POLICIES[mode]
    strategy = strategy or tf.distribute.get_strategy()
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "mixed_bfloat16"
    return "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"


def set_mixed_precision(mode="auto", strategy=None):
    """Set Keras' global dtype policy (before building the model); returns the policy name."""
    policy = mixed_precision_policy(mode, strategy)
    keras.mixed_precision.set_global_policy(policy)
    return policy


# --- gradient accumulation ------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="rubert_tf")
class AccumulatedStepsSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Feeds `schedule` the number of optimizer *updates* instead of micro-batches.

    Keras' `gradient_accumulation_steps` calls the learning-rate schedule with the micro-batch counter
    (documented Keras behaviour), so a schedule written in optimizer updates (as `create_optimizer`'s
    WarmupLinearDecay with `total_steps`) would run `steps` times too fast. At the k-th update the
    micro-batch counter is k*steps - 1 and this wrapper passes (k*steps - 1) // steps = k - 1: exactly
    what one device with a `steps` times larger batch sees."""

    def __init__(self, schedule, steps):
        self.schedule = keras.optimizers.schedules.deserialize(schedule) if isinstance(schedule, dict) else schedule
        self.steps = int(steps)

    def __call__(self, step):
        return self.schedule(step // self.steps)

    def get_config(self):
        return {"schedule": keras.optimizers.schedules.serialize(self.schedule), "steps": self.steps}


def enable_gradient_accumulation(optimizer, steps):
    """Accumulate gradients over `steps` micro-batches per optimizer update (before compile/build).

    Sets Keras' `gradient_accumulation_steps` and wraps a learning-rate schedule so it counts updates
    (see AccumulatedStepsSchedule); clipping and weight decay apply to the averaged gradient. The
    result equals training with a `steps` times larger batch (tests/test_fault_tolerance.py), also
    under a strategy (tests/test_distributed.py). `steps` in (None, 0, 1) leaves the optimizer alone.
    Returns the optimizer."""
    if not steps or int(steps) == 1:
        return optimizer
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"gradient accumulation steps must be >= 1, got {steps}")
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    if inner.built:
        raise ValueError("enable_gradient_accumulation must be called before the optimizer is built "
                         "(before model.compile/fit)")
    inner.gradient_accumulation_steps = steps
    schedule = inner._learning_rate
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule) and not isinstance(
            schedule, AccumulatedStepsSchedule):
        inner._learning_rate = AccumulatedStepsSchedule(schedule, steps)
    return optimizer
