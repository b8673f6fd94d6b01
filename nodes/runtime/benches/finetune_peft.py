"""transformers + PEFT LoRA training on the same tokens and settings as `benches/finetune.rs`.

Requirements (pip): torch==2.11.0 transformers==5.23.0 peft==0.21.2 accelerate==1.15.0 gguf==0.19.0

    python nodes/runtime/benches/finetune_peft.py --model GGUF_OR_HF_DIR --data BATCHES.json \
        [--batch 4] [--steps 4] [--device cpu|cuda]

`finetune.rs` writes BATCHES.json (token ids and loss masks) and runs this script itself when
given `--python`. f32 on the CPU, bf16 on CUDA (PEFT keeps the adapters in f32 there, as
the runtime does), right padding, LoRA r=8 alpha=16 dropout=0.05 on every projection, AdamW
lr 2e-4, clipping at 1.0; one step warms up, then `steps` steps are timed.
"""

import argparse
import json
import resource
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True)
parser.add_argument("--data", required=True)
parser.add_argument("--batch", type=int, default=4)
parser.add_argument("--steps", type=int, default=4)
parser.add_argument("--checkpointing", action="store_true")
parser.add_argument("--device", default="cpu")
args = parser.parse_args()

device = torch.device(args.device)
dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
source = Path(args.model)
if source.is_dir():
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
else:
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=dtype)
model.to(device)
torch.manual_seed(0)
model = get_peft_model(
    model,
    LoraConfig(
        r=8,
        lora_alpha=16,
        lora_dropout=0.05,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        task_type="CAUSAL_LM",
    ),
)
if args.checkpointing:
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
model.train()
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4, weight_decay=0.0)
rows = json.loads(Path(args.data).read_text())


def batch(i):
    chunk = rows[i * args.batch : (i + 1) * args.batch]
    t = max(len(r["ids"]) for r in chunk)
    ids = torch.zeros(len(chunk), t, dtype=torch.long)
    mask = torch.zeros(len(chunk), t, dtype=torch.long)
    labels = torch.full((len(chunk), t), -100, dtype=torch.long)
    for j, r in enumerate(chunk):
        n = len(r["ids"])
        ids[j, :n] = torch.tensor(r["ids"])
        mask[j, :n] = 1
        labels[j, :n] = torch.where(torch.tensor(r["trainable"]), torch.tensor(r["ids"]), -100)
    return ids.to(device), mask.to(device), labels.to(device), int(mask.sum())


def step(i):
    ids, mask, labels, tokens = batch(i)
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    opt.step()
    opt.zero_grad()
    return tokens, loss.item()


step(0)
start = time.perf_counter()
tokens = 0
for i in range(1, args.steps + 1):
    n, loss = step(i)
    tokens += n
if device.type == "cuda":
    torch.cuda.synchronize()
secs = time.perf_counter() - start
t = len(rows[0]["ids"])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # host memory, as the runtime's
print(f"transformers+peft  {args.batch:>5}  {t:>3}  {args.steps:>5}  {secs:>7.2f}  {tokens / secs:>8.1f}  {loss:>9.4f}  {peak:>12}")
