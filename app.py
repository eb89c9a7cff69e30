"""The one entry point: `python app.py` serves the chat UI and the API; subcommands ingest, docs, chunks, ask, eval."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from assistant.settings import Settings  # noqa: E402

log = logging.getLogger("app")


def _settings(args: argparse.Namespace) -> Settings:
    s = Settings()
    if getattr(args, "index", None):
        s.store.index_dir = args.index
    for name in ("host", "port", "root_path", "ui_public"):
        if getattr(args, name, None) is not None:
            setattr(s.server, name, getattr(args, name))
    if getattr(args, "k", None):
        s.retrieval.k = args.k
    return s


def _existing(s: Settings) -> Settings:
    """Read-only commands read an index; they never create an empty one where none is (a typo in --index)."""
    from ingest.schema import IndexEmpty

    if not s.store.chroma_host and not (Path(s.store.index_dir) / "chroma").exists():
        raise IndexEmpty(f"no index at {s.store.index_dir}: run `python app.py ingest docs/` first, or pass --index")
    return s


def _emit(obj: object) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=None))


def cmd_ingest(args: argparse.Namespace) -> int:
    from assistant.components import build_pipeline

    pipeline = build_pipeline(_settings(args))
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


def cmd_docs(args: argparse.Namespace) -> int:
    from assistant.components import open_index

    docs = sorted(open_index(_existing(_settings(args))).documents().values(), key=lambda d: d.doc_id)
    fields = ("doc_id", "title", "path", "issuer", "date", "chunks", "sha256", "ingested_at")
    rows = [{f: getattr(d, f) for f in fields} for d in docs]
    if args.json:
        _emit(rows)
    else:
        for r in rows:
            print(f"{r['doc_id']:45} {r['chunks']:4}  {r['title']}  {r['issuer']}  {r['date'][:10]}")
        print(f"{len(rows)} documents")
    return 0


def cmd_chunks(args: argparse.Namespace) -> int:
    from assistant.components import open_index

    index = open_index(_existing(_settings(args)))
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


def cmd_ask(args: argparse.Namespace) -> int:
    from assistant.cli import ask

    return ask(_existing(_settings(args)), args)


def cmd_eval(args: argparse.Namespace) -> int:
    from assistant.cli import evaluate

    return evaluate(_existing(_settings(args)), args)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from assistant.cli import calibrate

    return calibrate(_existing(_settings(args)), args)


def cmd_serve(args: argparse.Namespace) -> int:
    from assistant.cli import serve

    return serve(_settings(args), args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="app.py", description="Policy-document assistant with cited answers.")
    p.add_argument("--index", help="index directory (default .index/, env ASSISTANT_INDEX_DIR)")
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 7860)")
    p.add_argument("--root-path", dest="root_path", help="sub-path behind a reverse proxy")
    p.add_argument("--ui-public", dest="ui_public", action="store_true", default=None,
                   help="serve the chat UI without a login although API keys are set")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--index", help=argparse.SUPPRESS, default=argparse.SUPPRESS)
    common.add_argument("--json", action="store_true", help="machine-readable output")

    s = sub.add_parser("serve", help="serve the chat UI and the API (the default)")
    s.add_argument("--host", default=argparse.SUPPRESS)
    s.add_argument("--port", type=int, default=argparse.SUPPRESS)
    s.add_argument("--index", default=argparse.SUPPRESS)
    s.add_argument("--ui-public", dest="ui_public", action="store_true", default=argparse.SUPPRESS)
    s.add_argument("--root-path", dest="root_path", default=argparse.SUPPRESS)
    s = sub.add_parser("ingest", parents=[common], help="index documents (files or folders)")
    s.add_argument("paths", nargs="+")
    s.add_argument("--prune", action="store_true", help="remove indexed documents whose files are gone")
    sub.add_parser("docs", parents=[common], help="list indexed documents")
    s = sub.add_parser("chunks", parents=[common], help="list a document's chunks")
    s.add_argument("doc_id")
    s = sub.add_parser("ask", parents=[common], help="answer a question (or one per line from stdin)")
    s.add_argument("question", nargs="?")
    s.add_argument("--k", type=int)
    s = sub.add_parser("eval", parents=[common], help="evaluate with files of test questions")
    s.add_argument("files", nargs="+", metavar="FILE")
    s.add_argument("--k", type=int)
    s.add_argument("--cv", type=int, metavar="N", help="N-fold cross-validation: weights and thresholds are fitted "
                   "on the other folds, never on the questions scored")
    s.add_argument("--min", action="append", default=[], metavar="METRIC=VALUE",
                   help="exit 1 when a summary metric is below VALUE (e.g. --min recall_at_k=0.9); repeatable")
    s.add_argument("--report", help="write an HTML or Markdown report")
    s.add_argument("--baseline", metavar="MODULE:CALLABLE",
                   help="also evaluate a baseline side by side: CALLABLE(docs, embedder, work_dir) -> ask(question, "
                        "history); e.g. bench.naive:baseline (the naive LangChain pipeline, from the repository root)")
    s = sub.add_parser("calibrate", parents=[common],
                       help="fit the fusion weights and the refusal model on files of test questions")
    s.add_argument("files", nargs="+", metavar="FILE")
    s.add_argument("--out", help="where to write the calibration (default: the file shipped for the embedder)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from ingest.schema import IndexEmpty, IndexUnavailable, IngestError

    handlers = {"ingest": cmd_ingest, "docs": cmd_docs, "chunks": cmd_chunks, "ask": cmd_ask, "eval": cmd_eval,
                "calibrate": cmd_calibrate}
    try:
        return handlers.get(args.command, cmd_serve)(args)
    except IndexEmpty as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except (IngestError, IndexUnavailable, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
