"""The evaluation service behind both edges (the CLI's `eval` and the chat's 评测 tab): question files in, a
report out. The edges only turn arguments into a call and the result into text, a file or JSON."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from . import evaluate as ev
from .service import Assistant

# (docs, embedder) -> ask(question, history): a system the evaluator runs side by side (bench/naive.py).
BaselineFactory = Callable[..., Callable]


class CannotEvaluate(ValueError):
    """Nothing to evaluate (no file could be read, no line is a valid question), or more questions than allowed."""


@dataclass
class Evaluation:
    report: dict
    errors: list[str]
    baseline: dict | None = None

    def markdown(self) -> str:
        return ev.to_markdown(self.report, self.baseline, self.errors)

    def summary_markdown(self) -> str:
        """The report without its per-question table (metrics, per kind, lines not evaluated)."""
        return self.markdown().split(f"## {ev.QUESTIONS_HEADING}")[0].rstrip()

    def question_rows(self) -> list[list[str]]:
        return ev.question_rows(self.report)

    def html(self) -> str:
        return ev.to_html(self.report, self.baseline, self.errors)

    def to_dict(self) -> dict:
        return self.report | {"errors": self.errors} | ({"baseline": self.baseline} if self.baseline else {})

    def write(self, path: str | Path) -> None:
        ev.write_report(path, self.report, self.baseline, self.errors)


def read_questions(paths: Sequence[str | Path], names: Sequence[str] = ()) -> tuple[list[ev.Question], list[str]]:
    """The questions of every file, and every line or file that could not be read, named (`names` are what to
    call the files in messages, e.g. an upload's original name instead of its temporary path)."""
    questions, errors = [], []
    for i, path in enumerate(paths):
        name = names[i] if i < len(names) else Path(path).name
        try:
            qs, errs = ev.load_questions(path)
        except UnicodeDecodeError:
            errors.append(f"{name}: 不是 UTF-8 编码的文本（GBK 等请先另存为 UTF-8）/ not UTF-8 text")
            continue
        except OSError as e:
            errors.append(f"{name}: 无法读取 / cannot be read ({e.strerror or e})")
            continue
        questions += qs
        errors += [f"{name}: {e}" for e in errs]
    return questions, errors


def run(assistant: Assistant, paths: Sequence[str | Path], k: int, cv: int = 0,
        baseline: BaselineFactory | None = None, baseline_dir: str = "", progress=None,
        names: Sequence[str] = (), limit: int = 0) -> Evaluation:
    """Ask every question of the files and score the answers (`cv` > 1: fit on folds, score each fold's held-out
    questions). CannotEvaluate when there is nothing to ask, with what was wrong with the files, or more than
    `limit` questions (0: no limit) - checked before the first is asked."""
    questions, errors = read_questions(paths, names)
    if not questions:
        detail = "；".join(errors[:5]) or "文件是空的 / the files are empty"
        raise CannotEvaluate(f"没有可评测的问题 / no valid question: {detail}")
    if limit and len(questions) > limit:
        raise CannotEvaluate(f"问题过多：{len(questions)} 个，上限 {limit} 个 / too many questions: "
                             f"{len(questions)}, at most {limit}")
    docs = assistant.documents()
    if cv:
        from .crossval import cross_validate

        report = cross_validate(assistant, questions, docs, k, cv, progress)
    else:
        report = ev.evaluate(questions, lambda q, h: assistant.ask(q, h), docs, k, progress)
    other = None
    if baseline is not None:
        other = ev.evaluate(questions, baseline(docs, assistant.embedder, baseline_dir), docs, k)
    return Evaluation(report, errors, other)
