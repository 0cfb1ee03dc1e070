"""int8 vs float32: size ratio and accuracy drop for a few widths (the guide's "4x smaller, <1% drop").

For each width, one base model is trained on the demo data and converted twice; both artifacts
run in the TFLite Micro interpreter on the validation split.

    python benchmarks/int8_vs_float.py [--widths 0.25,0.5,1.0] [--family mobilenet_v1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="0.25,0.5,1.0")
    parser.add_argument("--family", default="mobilenet_v1")
    parser.add_argument("--target", default="nucleo-l4r5zi")
    args = parser.parse_args()
    from search.candidate import evaluate_candidate
    from search.data import load_demo
    from search.result import CandidateSpec
    from search.targets import get_target

    target, data = get_target(args.target), load_demo()
    header = ("width", "float32 B", "int8 B", "ratio", "acc f32", "acc int8", "drop pt")
    print(" ".join(f"{h:>9s}" for h in header))
    with tempfile.TemporaryDirectory() as tmp:
        for w in (float(v) for v in args.widths.split(",")):
            res = {}
            for p in ("float32", "int8"):
                spec = CandidateSpec(family=args.family, width=w, precision=p)
                res[p] = evaluate_candidate(spec, target, data, Path(tmp) / f"{w}-{p}", cache_dir=Path(tmp) / "cache")
            f32, i8 = res["float32"], res["int8"]
            size_f, size_i = f32.sparsity["stored_bytes"], i8.sparsity["stored_bytes"]
            acc_f, acc_i = f32.figures["accuracy"].value, i8.figures["accuracy"].value
            print(
                f"{w:9.2f} {size_f:9,d} {size_i:9,d} {size_f / size_i:9.2f} {acc_f:9.3f} {acc_i:9.3f} "
                f"{(acc_f - acc_i) * 100:9.2f}"
            )
    print("\nsizes are the .tflite files; accuracies are measured in the TFLite Micro interpreter (360 samples)")


if __name__ == "__main__":
    main()
