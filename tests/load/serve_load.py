#!/usr/bin/env python3
"""Load test of persona-cli serve, loopback only: concurrent streaming clients with mixed steering.

Each request variant (unsteered, steered toward the vector, steered away from it; greedy) is
first run alone; then CLIENTS threads stream REQUESTS requests between them, and every streamed
answer must equal its variant's solo answer (no failed, mixed-up or cross-steered responses).
Prints requests/s, aggregate tokens/s, time to first token and latency (p50, p99), then one JSON
line; exits 1 on any failure or mismatch. Standard library only.

  tests/load/serve_load.py --serve build/app/persona-cli --vectors projects    # starts a server
  tests/load/serve_load.py --url http://127.0.0.1:8080 --api-key KEY           # a running one
"""
import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

PROMPTS = ["How should I treat my neighbours?", "What do you think of people who lie?",
           "Give me advice on my first job.", "What would you do with a lot of power?"]


def post(url, body, key, stream):
    request = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    if key:
        request.add_header("Authorization", "Bearer " + key)
    return urllib.request.urlopen(request, timeout=600)


def get(url, path, key):
    request = urllib.request.Request(url + path)
    if key:
        request.add_header("Authorization", "Bearer " + key)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def variants(url, key, args):
    vector = args.vector
    if not vector:
        served = [v["id"] for v in get(url, "/v1/vectors", key)["data"] if v["id"].endswith(".safetensors")]
        if not served:
            sys.exit("serve_load: the server serves no vector file (start it with --vectors DIR)")
        vector = sorted(served)[0]
    steerings = [None, args.strength, -args.strength]
    out = []
    for i, prompt in enumerate(PROMPTS):
        for strength in steerings:
            body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": args.max_tokens, "temperature": 0}
            if strength is not None:
                body["steering"] = [{"vector": vector, "layer": args.layer, "strength": strength}]
            out.append(body)
    return vector, out


def stream_one(url, key, body):
    """Returns (text, seconds to the first text, seconds in all)."""
    started = time.monotonic()
    first = None
    text = ""
    with post(url, dict(body, stream=True), key, True) as response:
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choice = json.loads(line[6:])["choices"][0]
            if choice.get("error"):
                raise RuntimeError(choice["error"])
            piece = choice.get("delta", {}).get("content", "")
            if piece and first is None:
                first = time.monotonic() - started
            text += piece
    return text, first if first is not None else time.monotonic() - started, time.monotonic() - started


def run(url, key, args):
    vector, bodies = variants(url, key, args)
    solo = []
    for body in bodies:
        with post(url, body, key, False) as response:
            answer = json.load(response)
        solo.append((answer["choices"][0]["message"]["content"], answer["usage"]["completion_tokens"]))
    if len({text for text, _ in solo}) < 2:
        print("serve_load: warning: every variant gives the same answer; a mix-up could not show", file=sys.stderr)

    results, failures = [], []
    lock = threading.Lock()
    jobs = list(range(args.requests))

    def client():
        while True:
            with lock:
                if not jobs:
                    return
                job = jobs.pop()
            index = job % len(bodies)
            try:
                text, first, total = stream_one(url, key, bodies[index])
                with lock:
                    if text != solo[index][0]:
                        failures.append(f"request {job}: its answer differs from the same request run alone")
                    results.append((first, total, solo[index][1]))
            except (OSError, RuntimeError, ValueError) as error:
                with lock:
                    failures.append(f"request {job}: {error}")

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started

    figures = {"clients": args.clients, "requests": args.requests, "max_tokens": args.max_tokens, "vector": vector,
               "variants": len(bodies), "seconds": round(wall, 2), "failed_or_mixed": len(failures)}
    if results:
        firsts = [r[0] * 1000 for r in results]
        totals = [r[1] * 1000 for r in results]
        figures.update({"requests_per_s": round(len(results) / wall, 3),
                        "tokens_per_s": round(sum(r[2] for r in results) / wall, 1),
                        "ttft_ms_p50": round(statistics.median(firsts)), "ttft_ms_p99": round(percentile(firsts, 0.99)),
                        "latency_ms_p50": round(statistics.median(totals)), "latency_ms_p99": round(percentile(totals, 0.99))})
    for failure in failures[:10]:
        print("serve_load: " + failure, file=sys.stderr)
    print(f"{figures['requests']} requests from {args.clients} clients, {args.max_tokens} tokens each, in {wall:.1f} s: "
          f"{figures.get('requests_per_s')} requests/s, {figures.get('tokens_per_s')} tokens/s; first token p50 "
          f"{figures.get('ttft_ms_p50')} ms, p99 {figures.get('ttft_ms_p99')} ms; failed or mixed up: {len(failures)}")
    print(json.dumps(figures))
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running server, http://127.0.0.1:PORT (loopback only)")
    parser.add_argument("--serve", metavar="PERSONA_CLI", help="start persona-cli serve on a free loopback port")
    parser.add_argument("--model", help="with --serve: the model (default: the default model)")
    parser.add_argument("--vectors", help="with --serve: the folder of vector files to serve")
    parser.add_argument("--api-key")
    parser.add_argument("--vector", help="served vector to steer with (default: the first listed file)")
    parser.add_argument("--layer", type=int, default=8)
    parser.add_argument("--strength", type=float, default=0.3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    if bool(args.url) == bool(args.serve):
        parser.error("give --url or --serve")
    if args.url:
        host = args.url.split("://", 1)[-1].split(":", 1)[0].split("/", 1)[0]
        if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
            parser.error("the load test runs on loopback only")
        return run(args.url.rstrip("/"), args.api_key, args)
    options = ["--max-queue", str(max(16, args.clients))] + (["--model", args.model] if args.model else [])
    with started_server(args.serve, args.vectors, options) as url:
        return run(url, None, args)


@contextlib.contextmanager
def started_server(persona_cli, vectors=None, options=()):
    """persona-cli serve on a free loopback port, on the CPU; yields its URL, stops it after."""
    command = [persona_cli, "--device", "cpu", "serve", "--port", "0"] + list(options)
    if vectors:
        command += ["--vectors", vectors]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline().strip()
        if not line.startswith("listening on http://"):
            sys.exit(f"the server did not start ({line!r})")
        yield line[len("listening on "):]
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
