"""A Llama-3.2-1B-shaped model with random weights, as a Hugging Face folder, for the GPU
run of `cargo bench -p dag-runtime --bench finetune` (issue: LoRA SFT beside
transformers + PEFT on a 1B model in bf16).

Requirements (pip): torch==2.11.0 transformers==5.23.0 gguf==0.19.0

    python nodes/runtime/benches/make_random_llama.py OUT_DIR --tokenizer SMOLLM2.gguf [--dtype bf16]

The shape is Llama-3.2-1B's (16 layers, hidden 2048, MLP 8192, 32 query and 8 key/value
heads, vocabulary 128256, tied embeddings, llama3 RoPE scaling); the weights are
transformers' random initialisation with seed 0. The tokenizer is SmolLM2's (its 49152 ids
all fall inside the larger vocabulary): only throughput is measured, so the text need not
mean anything, but both engines must read the same tokens.
"""

import argparse
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--tokenizer", required=True, help="SmolLM2 GGUF whose tokenizer to copy")
ap.add_argument("--dtype", default="bf16", choices=["bf16", "f32"])
a = ap.parse_args()

config = LlamaConfig(
    vocab_size=128256,
    hidden_size=2048,
    intermediate_size=8192,
    num_hidden_layers=16,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=64,
    max_position_embeddings=131072,
    rms_norm_eps=1e-5,
    rope_theta=500000.0,
    rope_scaling={
        "rope_type": "llama3",
        "factor": 32.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
    tie_word_embeddings=True,
    bos_token_id=1,
    eos_token_id=2,
)
torch.manual_seed(0)
model = LlamaForCausalLM(config).to({"bf16": torch.bfloat16, "f32": torch.float32}[a.dtype])
out = Path(a.out)
model.save_pretrained(out)
gguf = Path(a.tokenizer)
AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out)
print(f"{sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters written to {out}")
