"""LLM translation throughput against a local OpenAI-compatible server with a fixed answer latency.

    python benchmarks/translate_throughput.py                  # 100 ms latency, 1/4/16 workers
    python benchmarks/translate_throughput.py --latency 0.05 --texts 400 --workers 1 8 32

For each worker count: answers per second through the real client, cache and answer checks, and
the share of the ideal workers/latency. Then the same texts again, which must be all cache hits.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers import ChatServerApp, LoopbackServer
from unleet.lexicon import Normaliser
from unleet.llm import make_translator
from unleet.params import TranslateParams

REPO_ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds the server takes per answer")
    parser.add_argument("--texts", type=int, default=0, help="texts per run (default: 20 per worker, at least 40)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 16])
    args = parser.parse_args()

    app = ChatServerApp(Normaliser(), latency_s=args.latency)
    print(f"server latency {args.latency * 1000:.0f} ms; answers/s through unleet.llm.Translator (openai backend)")
    print(f"{'workers':>7} {'texts':>6} {'seconds':>8} {'answers/s':>10} {'ideal':>7} {'share':>6}")
    with LoopbackServer(app) as server, tempfile.TemporaryDirectory() as scratch:
        for workers in args.workers:
            count = args.texts or max(40, 20 * workers)
            texts = [f"w{workers} idk wh4t 2 d0 tbh #{n}" for n in range(count)]
            params = TranslateParams(
                backend="openai",
                path=str(REPO_ROOT / "conf/prompts/translate_v1.txt"),
                base_url=f"{server.url}/v1",
                model="bench",
                workers=workers,
                temperature=0.0,
                max_tokens=64,
                timeout_s=30.0,
                max_retries=2,
                backoff_s=0.1,
                max_wait_s=10.0,
            )
            cache = Path(scratch) / f"cache-{workers}.jsonl"
            started = time.perf_counter()
            make_translator(params, cache)(texts)
            seconds = time.perf_counter() - started
            rate, ideal = count / seconds, workers / args.latency
            print(f"{workers:>7} {count:>6} {seconds:>8.2f} {rate:>10.1f} {ideal:>7.0f} {rate / ideal:>6.0%}")

        before = app.count()
        started = time.perf_counter()
        translator = make_translator(params, cache)
        translator(texts)
        seconds = time.perf_counter() - started
        requests = app.count() - before
        print(
            f"cached rerun of {count} texts: {seconds:.3f} s, {count / seconds:,.0f} answers/s, "
            f"{requests} requests, {translator.metrics()['cache_hits']} cache hits"
        )


if __name__ == "__main__":
    main()
