"""transformers' side of `cargo bench -p dag-worker --bench extract`.

Requirements (pip): torch==2.11.0 transformers==5.23.0 tokenizers==0.23.3 gguf==0.19.0
accelerate==1.13.0 numpy==2.4.6

    python extract_transformers.py MODEL.gguf DATA.jsonl [--max-len 128] [--batch 8]

Does what the extract-activations node does: tokenise each `text` (keeping the last `max-len`
tokens), group rows in shards of 64 sorted by length, run batches of `batch` left-padded rows
with `output_hidden_states=True`, and copy hidden states 6, 15 and 24 of the real tokens to
numpy. Prints one JSON line: tokens, seconds (forward passes and copies only, model loading
excluded) and tokens per second.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

LAYERS = [6, 15, 24]
SHARD = 64


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    a = ap.parse_args()
    gguf = Path(a.model)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.eval()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    texts = [json.loads(l)["text"] for l in open(a.data)]
    start = time.perf_counter()
    ids = [tok(t).input_ids[-a.max_len :] for t in texts]
    tokens = sum(len(i) for i in ids)
    kept = 0
    with torch.no_grad():
        for s in range(0, len(ids), SHARD):
            shard = sorted(range(s, min(s + SHARD, len(ids))), key=lambda i: -len(ids[i]))
            for b in range(0, len(shard), a.batch):
                rows = [ids[i] for i in shard[b : b + a.batch]]
                width = max(len(r) for r in rows)
                x = torch.tensor([[0] * (width - len(r)) + r for r in rows])
                mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
                hs = model(input_ids=x, attention_mask=mask, output_hidden_states=True).hidden_states
                for l in LAYERS:
                    h = hs[l].float().numpy()
                    for j, r in enumerate(rows):
                        kept += np.ascontiguousarray(h[j, width - len(r) :]).size
    secs = time.perf_counter() - start
    print(json.dumps({"tokens": tokens, "seconds": secs, "tokens_per_second": tokens / secs, "values": kept}))


if __name__ == "__main__":
    main()
