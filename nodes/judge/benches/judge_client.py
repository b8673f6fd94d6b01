"""The Python peer of `cargo bench -p dag-judge --bench throughput`: the same chat-completion
calls, `--concurrency` at a time, made with `openai.AsyncOpenAI` (the SDK most Python eval
harnesses use) or with a plain `httpx.AsyncClient`, each under an `asyncio.Semaphore` and one
`asyncio.gather`. Prints one JSON line: calls, seconds, calls_per_s, cpu_s.

    python judge_client.py --url http://127.0.0.1:PORT/v1 --calls 1000 --concurrency 8 \
        --client openai|httpx [--tag TAG]

Each call's prompt is `bench call {i} of {tag}`, as in the Rust bench, so no two calls are the
same request. The clock covers every call, from the first request to the last reply; the
interpreter's start-up, the imports and the client's construction are outside it (building a
client costs about 50 ms here, mostly loading its TLS trust store, and a harness builds one per
process). The first call's lazy set-up inside the SDK (30-70 ms) is inside it. The Rust side's
clock also covers building its client and runtime (about 5 ms with its first call). The work
done with each reply is what a dag node does: its text, served model and finish reason
serialised to JSON bytes.
"""

import argparse
import asyncio
import json
import sys
import time


def request_body(i: int, tag: str) -> dict:
    return {
        "model": "judge-bench",
        "messages": [{"role": "user", "content": f"bench call {i} of {tag}"}],
        "temperature": 0.0,
        "max_tokens": 16,
    }


def persist(text, served_model, finish_reason) -> bytes:
    reply = {"text": text or ""}
    if served_model is not None:
        reply["served_model"] = served_model
    if finish_reason is not None:
        reply["finish_reason"] = finish_reason
    return json.dumps(reply, separators=(",", ":")).encode()


async def timed(one, calls: int) -> tuple:
    """Every call at once under the semaphore: (calls answered, seconds, CPU seconds)."""
    cpu0, t0 = time.process_time(), time.perf_counter()
    sizes = await asyncio.gather(*(one(i) for i in range(calls)))
    return len(sizes), time.perf_counter() - t0, time.process_time() - cpu0


async def with_openai(url: str, calls: int, concurrency: int, tag: str) -> tuple:
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="bench", timeout=60.0)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> int:
        body = request_body(i, tag)
        async with sem:
            r = await client.chat.completions.create(**body)
        choice = r.choices[0]
        return len(persist(choice.message.content, r.model, choice.finish_reason))

    try:
        return await timed(one, calls)
    finally:
        await client.close()


async def with_httpx(url: str, calls: int, concurrency: int, tag: str) -> tuple:
    import httpx

    # As a user would write it. This leaves `max_keepalive_connections` unbounded (None;
    # the client's own default is 20), so at 64 in flight httpx keeps 64 connections, and
    # httpcore 1.0.9's pool costs O(connections^2) per request: on every request in or out it
    # counts all connections once for each idle one (`_assign_requests_to_connections`), and
    # polls each idle socket. About 12 ms of CPU a call here, against 2 ms with 20;
    # docs/benchmarks.md gives both figures.
    limits = httpx.Limits(max_connections=concurrency)
    client = httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> int:
        body = request_body(i, tag)
        async with sem:
            resp = await client.post("/chat/completions", json=body)
        resp.raise_for_status()
        v = resp.json()
        choice = v["choices"][0]
        return len(persist(choice["message"]["content"], v.get("model"), choice.get("finish_reason")))

    try:
        return await timed(one, calls)
    finally:
        await client.aclose()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="the API's base URL, up to and including /v1")
    p.add_argument("--calls", type=int, required=True)
    p.add_argument("--concurrency", type=int, required=True)
    p.add_argument("--client", choices=["openai", "httpx"], required=True)
    p.add_argument("--tag", default="python")
    a = p.parse_args()
    run = with_openai if a.client == "openai" else with_httpx
    done, seconds, cpu = asyncio.run(run(a.url, a.calls, a.concurrency, a.tag))
    print(json.dumps({
        "client": a.client,
        "calls": done,
        "concurrency": a.concurrency,
        "seconds": seconds,
        "calls_per_s": done / seconds,
        "cpu_s": cpu,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
