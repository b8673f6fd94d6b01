"""transformers' `generate` on the same prompts and settings as `benches/generate.rs`.

Requirements (pip): torch==2.11.0 transformers==5.23.0 accelerate==1.15.0 gguf==0.19.0

    python nodes/runtime/benches/generate_transformers.py [--model GGUF] [--batches 1,8,32] [--new-tokens 64]

Greedy, EOS ignored, f32 on the CPU, left padding; each batch size runs once to warm up and
once timed; prints generated tokens per second (prefill included).
"""

import argparse
import json
import os
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

parser = argparse.ArgumentParser()
parser.add_argument("--model", default=os.environ.get("DAG_SMOLLM2_GGUF"))
parser.add_argument("--batches", default="1,8,32")
parser.add_argument("--new-tokens", type=int, default=64)
args = parser.parse_args()

gguf = Path(args.model)
start = time.perf_counter()
model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
tokenizer.padding_side = "left"
model.eval()
print(f"model {gguf} loaded in {time.perf_counter() - start:.2f}s; torch threads {torch.get_num_threads()}")
prompts = json.loads((Path(__file__).parent / "prompts.json").read_text())
print("engine       batch  new_tokens  seconds  tokens/s")
for batch in [int(b) for b in args.batches.split(",")]:
    chosen = [prompts[i % len(prompts)] for i in range(batch)]
    enc = tokenizer(chosen, return_tensors="pt", padding=True)
    kwargs = dict(
        max_new_tokens=args.new_tokens,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.inference_mode():
        model.generate(**enc, **kwargs)
        start = time.perf_counter()
        out = model.generate(**enc, **kwargs)
        secs = time.perf_counter() - start
    tokens = (out.shape[1] - enc.input_ids.shape[1]) * batch
    print(f"transformers {batch:>5}  {args.new_tokens:>10}  {secs:>7.2f}  {tokens / secs:>8.1f}")
