"""The one entry point: `python app.py` serves the chat UI and the API; subcommands ingest, docs, chunks, ask, eval."""
from __future__ import annotations

import argparse
import logging
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from assistant.settings import Settings  # noqa: E402

log = logging.getLogger("app")


def _settings(args: argparse.Namespace) -> Settings:
    from assistant.cli import existing, settings_from

    s = settings_from(args)
    return s if args.command in (None, "serve", "ingest", "feedback") else existing(s)  # read-only ones need an index


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
    s = sub.add_parser("feedback", parents=[common], help="export the 👍/👎 feedback given in the chat")
    s.add_argument("--drafts", action="store_true",
                   help="the 👎 answers as draft test questions (JSON Lines: question, facts [] to fill, the comment)")
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

    from assistant import cli

    try:
        return getattr(cli, {"eval": "evaluate"}.get(args.command, args.command or "serve"))(_settings(args), args)
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
