"""Time to first token and to the full answer in Debian's Chromium, over the dev questions (50 by default).

python -m bench.browser [--index DIR] [--n 50]   (builds a temporary corpus index when --index is not given)
"""
from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
from bench.ask import p50_p95  # noqa: E402
from bench.common import ROOT, corpus_settings, serve  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from assistant.api import create_app  # noqa: E402
from assistant.evaluate import load_questions  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"]
# Watch the last bot message: record when text first appears and when the final render (links or refusal) lands.
WATCH = """(n) => { const t0 = performance.now(); let first = null; window.__result = null;
  const obs = new MutationObserver(() => { const b = document.querySelectorAll(".bot, [data-testid='bot']");
    if (b.length <= n) return; const last = b[b.length - 1];
    if (first === null && last.innerText.trim()) first = performance.now() - t0;
    if (last.querySelector('a[href^="#cite-"], .refused')) { obs.disconnect(); window.__result = [first, performance.now() - t0]; } });
  obs.observe(document.body, {subtree: true, childList: true, characterData: true}); }"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--index")
    ap.add_argument("--n", type=int, default=50)
    args = ap.parse_args()
    s = corpus_settings(args.index)
    server, url = serve(create_app(s))
    qs, _ = load_questions(ROOT / "tests" / "data" / "questions.jsonl")
    questions = [q.turns[-1] for q in qs][: args.n]
    first, full = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page()
        page.goto(f"{url}/")
        box = page.get_by_placeholder("请输入问题，按回车提问")
        box.wait_for()
        for q in questions:
            page.get_by_role("button", name="清空", exact=True).click()
            page.wait_for_function("() => document.querySelectorAll(\".bot, [data-testid='bot']\").length === 0")
            box.fill(q)
            n = page.locator(".bot, [data-testid='bot']").count()
            page.evaluate(WATCH, n)
            box.press("Enter")
            page.wait_for_function("() => window.__result !== null", timeout=60000)
            f, d = page.evaluate("window.__result")
            print(q, f, d, file=sys.stderr)
            first.append(f or d)
            full.append(d)
        browser.close()
    server.should_exit = True
    print(json.dumps({"questions": len(questions), "browser_first_token_ms": p50_p95(first),
                      "browser_full_answer_ms": p50_p95(full)}, indent=1))


if __name__ == "__main__":
    main()
