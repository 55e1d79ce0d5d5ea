"""Model files whose weights are stored as float16 and read back as float32: half the bytes, same arithmetic.

A served ensemble of three emotion networks (3.8M weights) is 15 MB as float32 files, over the
repository's 10 MB per file; stored as float16 it is 7.6 MB. Nothing is computed in float16: Keras
reads the file's float16 arrays into its float32 variables, and the ONNX copy turns each float16
weight back into float32 with a Cast node that ONNX Runtime folds away when it loads the file. The
weights are rounded to float16 once (round_to_float16) before the serving setup is chosen, so that
validation scores the numbers that are served.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

WEIGHTS_ENTRY = "model.weights.h5"     # inside a Keras 3 .keras archive
MIN_ELEMENTS = 16                      # smaller float tensors (shapes, scalars) stay float32


def round_to_float16(model) -> None:
    """Round the model's weights to what a float16 file gives back (in place)."""
    model.set_weights([w.astype(np.float16).astype(np.float32) if w.dtype == np.float32 and w.size >= MIN_ELEMENTS
                       else w for w in model.get_weights()])


def prepare_candidates(candidates: dict, float16: bool) -> int:
    """For an evaluator's --weights-float16: round every candidate network (once, shared members too) to what
    a float16 file gives back, so that validation scores what is served. Returns bytes a weight in the file."""
    if not float16:
        return 4
    for member in {id(m): m for members in candidates.values() for m in members}.values():
        round_to_float16(member)
    return 2


def storage_label(float16: bool) -> str:
    """What a card says about how its weights are stored."""
    return "float16, read back as float32" if float16 else "float32"


def store_keras_float16(path: Path) -> None:
    """Rewrite the .keras file at `path` with its float32 weight arrays as float16 (Keras 3 loads them back
    into float32 variables)."""
    import h5py
    path = Path(path)
    with zipfile.ZipFile(path) as archive:
        entries = {info.filename: (info, archive.read(info)) for info in archive.infolist()}
    source, converted = io.BytesIO(entries[WEIGHTS_ENTRY][1]), io.BytesIO()
    with h5py.File(source, "r") as src, h5py.File(converted, "w") as dst:
        dst.attrs.update(src.attrs)

        def copy(name, obj):
            if isinstance(obj, h5py.Dataset):
                data = obj[()]
                if data.dtype == np.float32 and data.size >= MIN_ELEMENTS:
                    data = data.astype(np.float16)
                dst.create_dataset(name, data=data).attrs.update(obj.attrs)
            else:
                dst.require_group(name).attrs.update(obj.attrs)
        src.visititems(copy)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, (info, data) in entries.items():
            archive.writestr(info, converted.getvalue() if name == WEIGHTS_ENTRY else data)
    tmp.replace(path)


def keras_stores_float16(path: Path) -> bool:
    """Whether the .keras file's weights are float16 (store_keras_float16)."""
    import h5py
    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read(WEIGHTS_ENTRY)), "r") as weights:
        found = []
        weights.visititems(lambda name, obj: found.append(obj.dtype) if isinstance(obj, h5py.Dataset) else None)
    return np.dtype(np.float16) in found


def store_onnx_float16(proto) -> int:
    """Keep the ONNX graph's float32 weights as float16, each read back by a Cast to float32 under its old
    name (in place). Returns how many weights were converted."""
    from onnx import TensorProto, helper, numpy_helper
    graph, casts = proto.graph, []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < MIN_ELEMENTS:
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), f"{name}__float16"))
        casts.append(helper.make_node("Cast", [f"{name}__float16"], [name], to=TensorProto.FLOAT,
                                      name=f"{name}__to_float32"))
    nodes = casts + list(graph.node)        # the casts first, so that the graph stays in topological order
    del graph.node[:]
    graph.node.extend(nodes)
    return len(casts)


def restore_onnx_float32(proto) -> int:
    """Undo store_onnx_float16 (in place): float32 weights again, for tools that look for weights among the
    graph's initializers (static quantization). Returns how many were restored."""
    from onnx import numpy_helper
    graph = proto.graph
    halves = {init.name: init for init in graph.initializer if init.name.endswith("__float16")}
    casts = [node for node in graph.node if node.op_type == "Cast" and len(node.input) == 1
             and node.input[0] in halves]
    for node in casts:
        half = halves.pop(node.input[0])
        half.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(half).astype(np.float32), node.output[0]))
        graph.node.remove(node)
    return len(casts)
