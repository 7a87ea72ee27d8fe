#!/usr/bin/env python3
"""Reference inference for the EfficientNet-Lite0 ONNX model, with onnxruntime (CPU).

Tensor mode (for tests; input already preprocessed, raw little-endian float32, 1x3x224x224 NCHW):
    python3 worker/model/reference.py --model target/model/efficientnet-lite0.onnx \
        --tensor FILE.f32 --top 5
    -> JSON {"top": [{"index": i, "probability": p}, ...], "probabilities": [1000 floats]}

Image mode (quick manual check; does the preprocessing of convert.py's contract with Pillow):
    python3 worker/model/reference.py --model ... --image photo.jpg [--labels names.txt]
        [--save-tensor FILE.f32] [--time]
    -> top-5 as text. `--labels`: optional 1000 class names in model index order, one per
    line, or a TSV whose header has a `name` column (e.g. worker/model/labels.tsv).
    `--save-tensor` writes the preprocessed tensor, for feeding the tensor mode.

Preprocessing (see convert.py): RGB, centre square crop of side floor(0.875 * min(W, H)) at
((W - c + 1) // 2, (H - c + 1) // 2), bicubic resize to 224x224, (v - 127) / 128, NCHW.
Softmax is computed here in float64 (the model outputs logits).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

SIZE = 224
SHAPE = (1, 3, SIZE, SIZE)
CROP_FRACTION = 0.875  # 224 / (224 + 32), TF EfficientNet eval crop padding
MEAN, STD = 127.0, 128.0


def load_tensor(path: Path) -> np.ndarray:
    data = np.fromfile(path, dtype="<f4")
    if data.size != np.prod(SHAPE):
        sys.exit(f"error: {path}: {data.size} floats, expected {int(np.prod(SHAPE))} (1x3x224x224)")
    return data.reshape(SHAPE).astype(np.float32)


def preprocess(path: Path) -> np.ndarray:
    """Image file -> float32 tensor 1x3x224x224, per the contract documented in convert.py."""
    from PIL import Image  # only needed in image mode

    with Image.open(path) as img:
        img = img.convert("RGB")
        w, h = img.size
        c = int(CROP_FRACTION * min(w, h))
        x0, y0 = (w - c + 1) // 2, (h - c + 1) // 2
        img = img.crop((x0, y0, x0 + c, y0 + c)).resize((SIZE, SIZE), Image.Resampling.BICUBIC)
        hwc = np.asarray(img, dtype=np.float32)
    return ((hwc - MEAN) / STD).transpose(2, 0, 1)[None].copy()


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max()
    e = np.exp(z)
    return e / e.sum()


def run(model: Path, tensor: np.ndarray, timed: bool) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # reproducible timings; results do not depend on it
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    logits = sess.run(["logits"], {"input": tensor})[0]
    if timed:
        runs = []
        for _ in range(10):
            start = time.perf_counter()
            sess.run(["logits"], {"input": tensor})
            runs.append(time.perf_counter() - start)
        print(f"onnxruntime {ort.__version__}, 1 thread: median {np.median(runs) * 1e3:.1f} ms, "
              f"min {min(runs) * 1e3:.1f} ms over {len(runs)} runs (after 1 warm-up)",
              file=sys.stderr)
    if logits.shape != (1, 1000):
        sys.exit(f"error: unexpected output shape {logits.shape}")
    return softmax(logits[0])


def top_k(probs: np.ndarray, k: int) -> list[dict]:
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"index": int(i), "probability": float(probs[i])} for i in order]


def load_labels(path: Path) -> list[str]:
    """1000 names: plain text one per line, or a TSV with a header holding a `name` column."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    if "name" in header:
        col = header.index("name")
        lines = [line.split("\t")[col] for line in lines[1:]]
    if len(lines) != 1000:
        sys.exit(f"error: {path}: {len(lines)} labels, expected 1000")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, required=True)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--tensor", type=Path, help="raw little-endian float32 1x3x224x224")
    src.add_argument("--image", type=Path, help="image file, preprocessed here with Pillow")
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--labels", type=Path, help="1000 class names, .txt or .tsv (image mode)")
    ap.add_argument("--save-tensor", type=Path, help="write the preprocessed tensor (image mode)")
    ap.add_argument("--time", action="store_true", help="time 10 inferences, report on stderr")
    args = ap.parse_args()
    tensor = load_tensor(args.tensor) if args.tensor else preprocess(args.image)
    if args.save_tensor:
        tensor.astype("<f4").tofile(args.save_tensor)
    probs = run(args.model, tensor, args.time)
    top = top_k(probs, args.top)
    if args.tensor:
        print(json.dumps({"top": top, "probabilities": [float(p) for p in probs]}))
        return
    names = load_labels(args.labels) if args.labels else None
    for rank, item in enumerate(top, 1):
        label = f"  {names[item['index']]}" if names else ""
        print(f"{rank}. {item['index']:4d} {item['probability'] * 100:6.2f}%{label}")


if __name__ == "__main__":
    main()
