"""Which ops an exported SavedModel uses, and whether the real TF Serving binary has them all.

TF Serving links TF core and tensorflow-text's kernels, nothing else: a py_function or an op from
another library would load here and fail there. TF Serving 2.12-2.19 bundle TF Text 2.12.1, whose
op library lacks RoundRobinTrim, so that op is refused too.
"""

import os

from tensorflow.core.protobuf import saved_model_pb2

# Ops that exist only in Python (they cannot run in a C++ server) or are missing from TF Text 2.12.1.
FORBIDDEN_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc", "RoundRobinTrim"}

# tensorflow-text ops our tokenizer uses; all present in TF Text 2.12.1 (TF Serving >= 2.12).
TF_TEXT_OPS = {"FastWordpieceTokenizeWithOffsets", "FastWordpieceDetokenize"}


def saved_model_ops(saved_model_dir):
    """Sorted op names of every graph and function in `saved_model_dir/saved_model.pb`."""
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    ops = set()
    for meta_graph in proto.meta_graphs:
        ops.update(node.op for node in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    return sorted(ops)


def unservable_ops(saved_model_dir):
    """Ops TF Serving (>= 2.12) cannot run: forbidden ones and any not registered by TF core or TF Text."""
    from tensorflow.python.framework import op_def_registry

    problems = []
    for op in saved_model_ops(saved_model_dir):
        if op in FORBIDDEN_OPS:
            problems.append(op)
        elif op not in TF_TEXT_OPS and op_def_registry.get(op) is None:
            problems.append(op)
    return problems
