"""CLI verbs behind app.py: ask, eval and serve (argument parsing stays in app.py)."""
from __future__ import annotations

import argparse
import json
import sys

from .settings import Settings


def _print_answer(ans, as_json: bool) -> None:
    if as_json:
        print(json.dumps(ans.to_dict(), ensure_ascii=False))
        return
    print(ans.answer)
    for c in ans.citations:
        print(f"  [{c.n}] {c.label()}  ({c.char_start}-{c.char_end})\n      “{c.quote}”")
    for u in ans.unverified:
        print(f"  ⚠ 未经核实: {u}")


def ask(settings: Settings, args: argparse.Namespace) -> int:
    from .service import build_assistant

    assistant = build_assistant(settings)
    questions = [args.question] if args.question else (ln.strip() for ln in sys.stdin)
    for q in questions:
        if q:
            _print_answer(assistant.ask(q), args.json)
            sys.stdout.flush()
    return 0


def evaluate(settings: Settings, args: argparse.Namespace) -> int:
    from . import evaluate as ev
    from .service import build_assistant

    questions, errors = ev.load_questions(args.file)
    for e in errors:
        print(f"warning: {args.file}: {e}", file=sys.stderr)
    assistant = build_assistant(settings)
    docs = assistant.index.documents()
    bar = None
    if sys.stderr.isatty() and not args.json:
        from tqdm import tqdm

        bar = tqdm(total=len(questions), unit="q", desc="eval")
    progress = (lambda i, n, r: bar.update(1)) if bar else None
    report = ev.evaluate(questions, lambda q, h: assistant.ask(q, h), docs, settings.retrieval.k, progress)
    if bar:
        bar.close()
    baseline = None
    if args.baseline == "naive":
        from bench.naive import NaivePipeline

        naive = NaivePipeline(docs, assistant.retriever.embedder, f"{settings.store.index_dir}/naive")
        baseline = ev.evaluate(questions, naive.ask, docs, settings.retrieval.k)
    report["errors"] = errors
    if args.report:
        ev.write_report(args.report, report, baseline, errors)
    if args.json:
        out = dict(report)
        if baseline:
            out["baseline"] = baseline
        print(json.dumps(out, ensure_ascii=False))
    else:
        print(ev.to_markdown(report, baseline, errors).split("## Questions")[0].rstrip())
        failed = [q for q in report["questions"] if not q["passed"]]
        for q in failed:
            print(f"FAIL {q['id']}: {q['question']} - {q['why']}")
    return 0


def serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from .api import create_app

    app = create_app(settings)
    index = app.state.get_assistant().index  # load the model and open the index before the first request
    srv = settings.server
    docs = index.documents()
    print(f"{len(docs)} documents, {index.count()} chunks ({index.location})" if docs else
          "warning: the index is empty - run `python app.py ingest docs/`", file=sys.stderr)
    print(f"serving on http://{srv.host}:{srv.port}{srv.root_path}/  (API docs at /docs)", file=sys.stderr)
    uvicorn.run(app, host=settings.server.host, port=settings.server.port, root_path=settings.server.root_path,
                timeout_graceful_shutdown=2, log_level="warning")
    return 0
