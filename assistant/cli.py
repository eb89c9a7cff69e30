"""The commands behind app.py (which only parses arguments and dispatches): ingest, docs, chunks, ask, eval,
calibrate and serve, each `command(settings, args) -> exit code`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .settings import Settings


def settings_from(args: argparse.Namespace) -> Settings:
    s = Settings()
    if getattr(args, "index", None):
        s.store.index_dir = args.index
    for name in ("host", "port", "root_path", "ui_public"):
        if getattr(args, name, None) is not None:
            setattr(s.server, name, getattr(args, name))
    if getattr(args, "k", None):
        s.retrieval.k = args.k
    return s


def existing(s: Settings) -> Settings:
    """Read-only commands read an index; they never create an empty one where none is (a typo in --index)."""
    from ingest.schema import IndexEmpty

    if not s.store.chroma_host and not (Path(s.store.index_dir) / "chroma").exists():
        raise IndexEmpty(f"no index at {s.store.index_dir}: run `python app.py ingest docs/` first, or pass --index")
    return s


def _emit(obj: object) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=None))


def ingest(settings: Settings, args: argparse.Namespace) -> int:
    from ingest.priority import lower_priority

    from .components import build_pipeline

    lower_priority(settings.ingest.nice)  # batch work: a server answering on this machine goes first
    pipeline = build_pipeline(settings)
    bar = None
    if not args.json and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=0, unit="file", desc="ingest")

    def progress(n: int, total: int, res) -> None:
        if bar is not None:
            bar.total = total
            bar.set_postfix_str(f"{Path(res.path).name}: {res.status}")
            bar.update(1)

    report = pipeline.run(args.paths, prune=args.prune, on_progress=progress)
    if bar is not None:
        bar.close()
    if args.json:
        _emit(report.to_dict())
    else:
        for d in report.documents:
            extra = f"  ({d.error})" if d.error else ""
            print(f"{d.status:9} {d.chunks:5}  {d.doc_id or '-':40} {d.path}{extra}")
        counts = ", ".join(f"{v} {k}" for k, v in sorted(report.counts().items()))
        print(f"{counts}; {report.chunks_total} chunks in the index; {report.seconds:.1f} s")
    return 1 if report.documents and all(d.status == "failed" for d in report.documents) else 0  # nothing landed


def docs(settings: Settings, args: argparse.Namespace) -> int:
    from .components import open_index

    docs = sorted(open_index(settings).documents().values(), key=lambda d: d.doc_id)
    fields = ("doc_id", "title", "path", "issuer", "date", "chunks", "sha256", "ingested_at")
    rows = [{f: getattr(d, f) for f in fields} for d in docs]
    if args.json:
        _emit(rows)
    else:
        for r in rows:
            print(f"{r['doc_id']:45} {r['chunks']:4}  {r['title']}  {r['issuer']}  {r['date'][:10]}")
        print(f"{len(rows)} documents")
    return 0


def chunks(settings: Settings, args: argparse.Namespace) -> int:
    from .components import open_index

    index = open_index(settings)
    if index.document(args.doc_id) is None:
        print(f"error: no document with id {args.doc_id!r} (see `python app.py docs`)", file=sys.stderr)
        return 2
    from ingest.chunk import references

    rows = [{"chunk_id": cid, "text": c.text, "section": c.section_path, "article": c.article,
             "char_start": c.char_start, "char_end": c.char_end, "refers_to": references(c.text, c.article)}
            for cid, c in index.all_chunks(args.doc_id)]
    if args.json:
        _emit(rows)
    else:
        for r in rows:
            refs = f" -> {', '.join(r['refers_to'])}" if r["refers_to"] else ""
            print(f"[{r['chunk_id']}] {r['char_start']}-{r['char_end']} {r['section']} {r['article']}{refs}\n  {r['text'][:120]}")
    return 0


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
    from . import evaluations
    from .service import build_assistant

    assistant = build_assistant(settings)
    bar = None
    if sys.stderr.isatty() and not args.json:
        from tqdm import tqdm

        bar = tqdm(unit="q", desc="eval")
    progress = (lambda i, n, r: (setattr(bar, "total", n), bar.update(1))) if bar else None
    try:
        result = evaluations.run(assistant, args.files, args.k or settings.retrieval.k, args.cv,
                                 _load_hook(args.baseline) if args.baseline else None,
                                 f"{settings.store.index_dir}/baseline", progress)
    except evaluations.CannotEvaluate as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if bar:
            bar.close()
    for e in result.errors:
        print(f"warning: {e}", file=sys.stderr)
    if args.report:
        result.write(args.report)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        print(result.summary_markdown())
        for q in result.report["questions"]:
            if not q["passed"]:
                print(f"FAIL {q['id']} [{q['kind']}]: {q['question']} - {q['why']}")
    return _gates(result.report["summary"], args.min)


def _load_hook(spec: str):
    """'package.module:callable' -> the callable (a baseline the evaluator runs side by side); imported by name,
    so the product never depends on what plugs into it."""
    import importlib

    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"--baseline expects MODULE:CALLABLE (e.g. bench.naive:baseline), got {spec!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load the baseline {spec!r}: {e}") from e


def _gates(summary: dict, gates: list[str]) -> int:
    """1 when a `--min metric=value` gate is not met (false_refusal_rate is a maximum), else 0."""
    failed = 0
    for gate in gates:
        name, _, value = gate.partition("=")
        if name not in summary or summary[name] is None:
            raise ValueError(f"unknown metric in --min {gate!r}: one of {', '.join(summary)}")
        got, want = float(summary[name]), float(value)
        ok = got <= want if name.endswith("_rate") and "false" in name else got >= want
        if not ok:
            print(f"gate failed: {name} = {got} (wanted {'<=' if 'false' in name else '>='} {want})", file=sys.stderr)
            failed = 1
    return failed


def feedback(settings: Settings, args: argparse.Namespace) -> int:
    """The chat's feedback: every rating as JSON (or one per line), or the 👎 ones as draft test questions."""
    from .conversations import ConversationStore, draft_questions

    if not settings.store.conversations_url and not (Path(settings.store.index_dir) / "conversations.sqlite3").exists():
        print(f"no conversations database in {settings.store.index_dir}", file=sys.stderr)
        return 3
    rows = ConversationStore(settings.store.conversations()).feedback()
    if args.drafts:
        for d in draft_questions(rows):
            print(json.dumps(d, ensure_ascii=False))
    elif args.json:
        print(json.dumps(rows, ensure_ascii=False))
    else:
        for r in rows:
            print(f"{'👍' if r['rating'] > 0 else '👎'} {r['user']}: {r['question']} - {r['comment'] or '(no comment)'}")
    return 0


def calibrate(settings: Settings, args: argparse.Namespace) -> int:
    from . import calibration as calib
    from .crossval import fit_all
    from .evaluations import read_questions
    from .service import build_assistant

    questions, errors = read_questions(args.files)
    for e in errors:
        print(f"warning: {e}", file=sys.stderr)
    if not questions:
        print("error: no valid question to fit on", file=sys.stderr)
        return 2
    assistant = build_assistant(settings)
    name = assistant.embedder.name
    cal = fit_all(assistant, questions, assistant.documents(),
                  {"files": [Path(f).name for f in args.files], "questions": len(questions)})
    out = Path(args.out) if args.out else calib.default_path(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    cal.save(out)
    summary = {"file": str(out), "embedder": name, "weights": cal.weights.__dict__, "threshold": cal.threshold,
               "llm_threshold": cal.llm_threshold, "coef": dict(zip(cal.features, cal.coef))}
    print(json.dumps(summary, ensure_ascii=False, indent=None if args.json else 1))
    if not args.out:
        print("set ASSISTANT_RETRIEVAL__CALIBRATION_FILE to use a calibration kept elsewhere", file=sys.stderr)
    return 0


def serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from .api import create_app
    from .service import settle_heap

    app = create_app(settings)
    index = app.state.get_assistant().index  # load the model and open the index before the first request
    srv = settings.server
    orphans = index.clean_orphans()  # chunks a killed ingest left, unless an ingest is running right now
    if orphans:
        print(f"removed {orphans} chunks left by an interrupted ingest", file=sys.stderr)
    docs = index.documents()
    print(f"{len(docs)} documents, {index.count()} chunks ({index.location})" if docs else
          "warning: the index is empty - run `python app.py ingest docs/`", file=sys.stderr)
    settle_heap()
    print(f"serving on http://{srv.host}:{srv.port}{srv.root_path}/", file=sys.stderr)
    if not srv.frame_ancestors:
        print("the chat widget on another site opens in a new tab; to show it framed there, set "
              "ASSISTANT_SERVER__FRAME_ANCESTORS='[\"https://your.intranet\"]'", file=sys.stderr)
    uvicorn.run(app, host=settings.server.host, port=settings.server.port, root_path=settings.server.root_path,
                timeout_graceful_shutdown=2, log_level="warning",
                proxy_headers=False)  # the peer address must stay the proxy's, for TRUSTED_PROXIES
    return 0
