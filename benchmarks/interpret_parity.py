"""How far alignlab's cached activations are from TransformerLens 4.3's ``TransformerBridge`` on the same tiny
random weights, for every mapped family (the tests assert ≤ 1e-6; this records the measured gaps for the docs).

Each family's tiny model (:func:`alignlab.interpret.families.tiny_model`, fp32) runs a batch of random
tokens through ``run_with_cache`` and through the bridge (weight processing off, so both compute the Hugging
Face model); for each compared hook point the largest absolute difference over both layers is written to
``docs/results/interpret/parity_transformerlens.json``.

    .venv/bin/python benchmarks/interpret_parity.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
POINTS = ("hook_resid_pre", "attn.hook_pattern", "attn.hook_z", "hook_mlp_out", "hook_resid_post")
OUTPUT = ROOT / "docs" / "results" / "interpret" / "parity_transformerlens.json"


def main() -> None:
    from alignlab.core.provenance import package_version, write_result
    from alignlab.interpret.families import FAMILIES, tiny_model
    from alignlab.interpret.hooks import n_layers, run_with_cache
    from alignlab.interpret.peer import transformer_lens_bridge

    seed = 0
    ids = torch.randint(3, 64, (4, 12), generator=torch.Generator().manual_seed(seed))
    gaps = {}
    for family in sorted(FAMILIES):
        model = tiny_model(family, seed=seed)
        with tempfile.TemporaryDirectory() as folder:
            bridge = transformer_lens_bridge(model, folder)
        names = [f"blocks.{layer}.{point}" for layer in range(n_layers(model)) for point in POINTS]
        with torch.no_grad():
            logits, ours = run_with_cache(model, ids, names=names)
            peer_logits, theirs = bridge.run_with_cache(ids)
        gaps[family] = {point: max(float((ours[n] - theirs[n]).abs().max()) for n in names if n.endswith(point))
                        for point in POINTS}
        gaps[family]["logits"] = float((logits - peer_logits).abs().max())
        print(family, gaps[family], flush=True)
    write_result(OUTPUT, {"max_abs_difference": gaps, "batch": list(ids.shape),
                          "transformer_lens": package_version("transformer-lens")},
                 seed=seed, command=[Path(sys.executable).name, *sys.argv])
    print(f"result: {OUTPUT}")


if __name__ == "__main__":
    main()
