"""lm-evaluation-harness on the same model, tasks, items and batch size as `benches/evaluate.rs`.

Requirements (pip, beside the project's torch 2.11.0):
    lm-eval==0.4.13 transformers==5.23.0 gguf==0.19.0 accelerate==1.15.0

    python benches/evaluate_lm_eval.py --model GGUF --data ../shared/data --limit 20 --batch 16

Runs the 16 advanced-ai-risk human-written tasks (lm-eval's own YAML, pointed at the local
files), f32 on the CPU, and prints one JSON line: documents, seconds, documents/s (model load
excluded) and the load time.
"""

import argparse
import json
import pathlib
import time

import lm_eval
from lm_eval.api.task import ConfigurableTask
from lm_eval.evaluator import evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks._yaml_loader import load_yaml

parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True)
parser.add_argument("--data", required=True)
parser.add_argument("--limit", type=int, default=20)
parser.add_argument("--batch", type=int, default=16)
args = parser.parse_args()

gguf = pathlib.Path(args.model)
start = time.perf_counter()
lm = HFLM(pretrained=str(gguf.parent), gguf_file=gguf.name, dtype="float32", device="cpu",
          batch_size=args.batch)
load_s = time.perf_counter() - start

tasks_dir = pathlib.Path(lm_eval.__file__).parent / "tasks"
evals = pathlib.Path(args.data) / "anthropic-advanced-ai-risk" / "human_generated_evals"
task_dict = {}
for path in sorted(evals.glob("*.jsonl")):
    name = f"advanced_ai_risk_human-{path.stem}"
    cfg = load_yaml(tasks_dir / "model_written_evals/advanced_ai_risk/human-coordinate-itself.yaml",
                    resolve_func=True)
    cfg.update({"task": name, "dataset_path": "json",
                "dataset_kwargs": {"data_files": {"validation": str(path)}}})
    cfg.pop("dataset_name", None)
    task = ConfigurableTask(config=cfg)
    task.set_fewshot_seed(seed=1234)
    task_dict[name] = task

start = time.perf_counter()
res = evaluate(lm=lm, task_dict=task_dict, limit=args.limit, bootstrap_iters=0, verbosity="ERROR")
seconds = time.perf_counter() - start
docs = sum(min(args.limit, len(t.eval_docs)) for t in task_dict.values())
print(json.dumps({"docs": docs, "seconds": seconds, "docs_per_s": docs / seconds, "load_s": load_s,
                  "acc": {k: v.get("acc,none") for k, v in res["results"].items()}}))
