"""Test questions -> per-question results and summary metrics -> JSON, Markdown or HTML report."""
from __future__ import annotations

import html
import json
import re
import statistics
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ingest.clean import normalise
from ingest.schema import Document

from .answer import Answer


@dataclass
class Question:
    id: str
    turns: list[str]
    facts: list[str]
    evidence: str = ""
    doc: str = ""
    line: int = 0
    kind: str = ""  # what sort of question (everyday, number, unanswerable_on_topic, ...): metrics are per kind
    source: str = ""  # the file it came from

    @property
    def answerable(self) -> bool:
        return bool(self.facts)


@dataclass
class Result:
    id: str
    question: str
    answerable: bool
    kind: str
    source: str
    rank: int | None  # 1-based rank of the first passage holding the evidence
    refused: bool
    refusal_correct: bool
    fact_recall: float | None
    citations: int
    citations_valid: int
    citations_relevant: int
    latency_ms: float
    answer: str
    cited: list[str] = field(default_factory=list)
    unverified: int = 0  # claims of the answer the citation check could not bear out
    claims: int = 0  # claims the citation check examined
    ends_at_lead_in: bool = False  # the answer stops at "…以下几个方面：" without the items
    passed: bool = False
    why: str = ""
    mode: str = ""  # extractive, llm, extractive-fallback (an LLM reply withheld or the LLM failed), outline…
    withheld: str = ""  # why an LLM reply was not shown, when it was not


def norm(text: str) -> str:
    """NFKC- and whitespace-normalised, for containment checks."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", normalise(text)))


def load_questions(path: str | Path) -> tuple[list[Question], list[str]]:
    """Parse JSON Lines; a bad line becomes an error naming its number and the others still load."""
    questions, errors = [], []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(f"line {i}: not valid JSON ({e.msg} at column {e.colno})")
            continue
        if not isinstance(obj, dict):
            errors.append(f"line {i}: expected a JSON object, got {type(obj).__name__}")
            continue
        turns = obj.get("turns") if "turns" in obj else ([obj["question"]] if "question" in obj else None)
        if turns is None:
            errors.append(f"line {i}: missing field 'question' (or 'turns')")
            continue
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t.strip() for t in turns):
            errors.append(f"line {i}: 'question' must be a non-empty string and 'turns' a list of them")
            continue
        if "facts" not in obj:
            errors.append(f"line {i}: missing field 'facts' (use [] for a question the documents cannot answer)")
            continue
        facts = obj["facts"]
        if not isinstance(facts, list) or not all(isinstance(f, str) for f in facts):
            errors.append(f"line {i}: 'facts' must be a list of strings")
            continue
        for key in ("evidence", "doc", "id", "kind"):
            if key in obj and not isinstance(obj[key], (str, int)):
                errors.append(f"line {i}: '{key}' must be a string")
                break
        else:
            questions.append(Question(str(obj.get("id", f"line{i}")), turns, facts, obj.get("evidence", "") or "",
                                      obj.get("doc", "") or "", i, str(obj.get("kind", "") or ""), Path(path).name))
    return questions, errors


def gold_span(q: Question, docs: dict[str, Document]) -> tuple[str, int, int] | None:
    """Where the evidence sits in the cleaned documents (doc_id, start, end), preferring the named file."""
    if not q.evidence:
        return None
    ev = q.evidence.strip()
    ordered = sorted(docs.values(), key=lambda d: Path(d.path).name != q.doc)
    for d in ordered:
        i = d.text.find(ev)
        if i < 0:
            i = d.text.find(normalise(ev))
        if i >= 0:
            return d.doc_id, i, i + len(ev)
    return None


def holds_evidence(passage_text: str, doc_id: str, start: int, end: int, q: Question,
                   gold: tuple[str, int, int] | None) -> bool:
    if q.evidence and norm(q.evidence) in norm(passage_text):
        return True
    return bool(gold and gold[0] == doc_id and start < gold[2] and gold[1] < end)


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return round(s[min(len(s) - 1, max(0, int(round(p / 100 * (len(s) - 1)))))], 1)


AskFn = Callable[[str, list], Answer]


def evaluate(questions: Iterable[Question], ask: AskFn, docs: dict[str, Document], k: int = 5,
             on_progress: Callable[[int, int, Result], None] | None = None) -> dict:
    """Run every question through `ask` and score it; returns {'summary', 'questions'}."""
    questions = list(questions)
    results: list[Result] = []
    for i, q in enumerate(questions, 1):
        history: list = []
        for turn in q.turns[:-1]:
            prev = ask(turn, history)
            history = history + [{"role": "user", "content": turn}, {"role": "assistant", "content": prev.answer}]
        t0 = time.perf_counter()
        ans = ask(q.turns[-1], history)
        latency = (time.perf_counter() - t0) * 1000
        results.append(score(q, ans, docs, k, latency))
        if on_progress:
            on_progress(i, len(questions), results[-1])
    return make_report(results, k)


def make_report(results: list[Result], k: int) -> dict:
    """{'summary', 'by_kind', 'questions'}: every metric overall and for each kind of question."""
    kinds = sorted({r.kind for r in results})
    sources = sorted({r.source for r in results})
    return {"summary": summarise(results, k),
            "by_kind": {kind: summarise([r for r in results if r.kind == kind], k) for kind in kinds},
            "by_source": {src: summarise([r for r in results if r.source == src], k) for src in sources},
            "questions": [asdict(r) for r in results]}


def score(q: Question, ans: Answer, docs: dict[str, Document], k: int, latency_ms: float) -> Result:
    gold = gold_span(q, docs)
    rank = None
    if q.answerable:
        for j, p in enumerate(ans.passages[:k], 1):
            if holds_evidence(p.text, p.doc_id, p.char_start, p.char_end, q, gold):
                rank = j
                break
    by_n = {p.n: p for p in ans.passages}
    valid = sum(1 for c in ans.citations if c.doc_id in docs and docs[c.doc_id].text[c.char_start:c.char_end] == c.quote)
    relevant = sum(1 for c in ans.citations if c.n in by_n and holds_evidence(
        by_n[c.n].text, by_n[c.n].doc_id, by_n[c.n].char_start, by_n[c.n].char_end, q, gold))
    facts = None
    if q.answerable:
        text = norm(ans.answer) if not ans.refused else ""
        facts = sum(1 for f in q.facts if norm(f) in text) / len(q.facts)
    correct = ans.refused != q.answerable
    r = Result(q.id, " → ".join(q.turns), q.answerable, q.kind or "-", q.source, rank, ans.refused, correct, facts, len(ans.citations), valid,
               relevant, round(latency_ms, 1), ans.answer, [c.label() for c in ans.citations], len(ans.unverified),
               ans.claims, not ans.refused and bool(re.search(r"[:：]\s*(\[\d+\]\s*)*$", ans.answer)))
    why = []
    if not correct:
        why.append("refused an answerable question" if ans.refused else "answered instead of refusing")
    if q.answerable and rank is None:
        why.append(f"evidence not in top {k}")
    if facts is not None and facts < 1.0 and not ans.refused:
        why.append(f"fact recall {facts:.2f}")
    if valid < len(ans.citations):
        why.append("invalid citation")
    r.passed, r.why = not why, "; ".join(why)
    r.mode, r.withheld = ans.mode, (ans.replaced or {}).get("reason", "")
    return r


def summarise(results: list[Result], k: int) -> dict:
    ans = [r for r in results if r.answerable]
    unans = [r for r in results if not r.answerable]
    ranks = [r.rank for r in ans]
    cites = sum(r.citations for r in results)
    lat = [r.latency_ms for r in results]
    return {
        "n": len(results), "k": k,
        "recall_at_1": round(sum(1 for x in ranks if x == 1) / len(ans), 3) if ans else None,
        "recall_at_k": round(sum(1 for x in ranks if x is not None) / len(ans), 3) if ans else None,
        "mrr": round(sum(1 / x for x in ranks if x) / len(ans), 3) if ans else None,
        "fact_recall": round(statistics.mean(r.fact_recall or 0.0 for r in ans), 3) if ans else None,
        "refusal_accuracy": round(sum(1 for r in unans if r.refused) / len(unans), 3) if unans else None,
        "false_refusal_rate": round(sum(1 for r in ans if r.refused) / len(ans), 3) if ans else None,
        "citation_validity": round(sum(r.citations_valid for r in results) / cites, 3) if cites else 1.0,
        "citation_precision": round(sum(r.citations_relevant for r in ans) / max(1, sum(r.citations for r in ans)), 3),
        "latency_ms_p50": percentile(lat, 50), "latency_ms_p95": percentile(lat, 95),
        "passed": sum(1 for r in results if r.passed),
        "pass_rate": round(sum(1 for r in results if r.passed) / len(results), 3) if results else None,
        "answers_with_unverified": sum(1 for r in results if r.unverified and not r.refused),
        # claims borne out by their citation (figures, organisations, words) - unlike citation validity, this can fail
        "claim_support": round(1 - sum(r.unverified for r in results) / max(1, sum(r.claims for r in results)), 3),
        "answers_ending_at_lead_in": sum(1 for r in results if r.ends_at_lead_in),
        "refused": round(sum(1 for r in results if r.refused) / len(results), 3) if results else None,
    }


# Labels in Chinese like the rest of the product, the English term after them (as the API's messages).
KIND_COLUMNS = [("n", "题数 n"), ("passed", "通过 passed"), ("pass_rate", "通过率 pass rate"), ("recall_at_1", "R@1"),
                ("recall_at_k", "R@k"), ("fact_recall", "要点召回 fact recall"), ("refused", "拒答 refused"),
                ("false_refusal_rate", "误拒率 false refusals"), ("refusal_accuracy", "应拒已拒 unanswerable refused")]
TITLE = "评测报告 / Evaluation report"
QUESTIONS_HEADING = "逐题结果（未通过在前）/ Questions (failures first)"


def kind_rows(report: dict) -> list[list[str]]:
    """One row per kind of question: the table that shows the kind that fails."""
    def fmt(v):
        return "-" if v is None else str(v)
    return [[kind] + [fmt(m.get(key)) for key, _ in KIND_COLUMNS] for kind, m in report.get("by_kind", {}).items()]


def kind_markdown(report: dict) -> list[str]:
    lines = ["| 类型 kind | " + " | ".join(label for _, label in KIND_COLUMNS) + " |",
             "|---" * (len(KIND_COLUMNS) + 1) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in kind_rows(report)]


SUMMARY_LABELS = [("n", "问题数 questions"), ("recall_at_1", "首位命中 Recall@1"), ("recall_at_k", "前k命中 Recall@k"),
                  ("mrr", "MRR"), ("fact_recall", "要点召回 fact recall"),
                  ("refusal_accuracy", "应拒已拒 refusal accuracy (unanswerable refused)"),
                  ("false_refusal_rate", "误拒率 false refusal rate (answerable refused)"),
                  ("citation_validity", "引文有效 quote validity (quotes are cut from the stored text)"),
                  ("claim_support", "陈述有据 claim support"),
                  ("answers_ending_at_lead_in", "止于引导语的回答 answers ending at a lead-in"),
                  ("citation_precision", "引用精确率 citation precision"), ("latency_ms_p50", "耗时 p50 (ms)"),
                  ("latency_ms_p95", "耗时 p95 (ms)"), ("passed", "通过 passed")]
QUESTION_COLUMNS = ["编号 id", "类型 kind", "结果 result", "问题 question", "回答 answer", "原因 why"]


def question_rows(report: dict, answer_chars: int = 120) -> list[list[str]]:
    """One row per question, failures first, for a table a person reads (the answer cut to `answer_chars`)."""
    return [[str(r["id"]), r.get("kind") or "-", "通过" if r["passed"] else "未通过", r["question"],
             r["answer"][:answer_chars] + ("…" if len(r["answer"]) > answer_chars else ""), r["why"]]
            for r in _rows(report)]


def _rows(report: dict) -> list[dict]:
    return sorted(report["questions"], key=lambda r: (r["passed"], r["id"]))


def to_markdown(report: dict, baseline: dict | None = None, errors: Sequence[str] = ()) -> str:
    s = report["summary"]
    lines = [f"# {TITLE}", "", "| 指标 metric | 本系统 assistant |" + (" 基线 naive baseline |" if baseline else ""),
             "|---|---|" + ("---|" if baseline else "")]
    for key, label in SUMMARY_LABELS:
        b = f" {baseline['summary'].get(key)} |" if baseline else ""
        lines.append(f"| {label} | {s.get(key)} |{b}")
    if report.get("cv"):
        lines += ["", f"交叉验证 {report['cv']['folds']} 折：每个阈值和权重都在其他折上拟合，从不在被评分的问题上拟合。 "
                  f"Cross-validated: {report['cv']['folds']} folds; every threshold and weight was fitted on the "
                  "other folds, never on the questions it is scored on."]
    lines += ["", "## 按问题类型 / By kind", ""] + kind_markdown(report)
    if errors:
        lines += ["", "## 未评测的行 / Lines not evaluated", ""] + [f"- {e}" for e in errors]
    lines += ["", f"## {QUESTIONS_HEADING}", "", "| id | kind | pass | question | gold rank | refused | facts | answer | citations | why |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in _rows(report):
        cell = lambda x: str(x).replace("|", "\\|").replace("\n", " ")  # noqa: E731
        lines.append(f"| {r['id']} | {r.get('kind', '-')} | {'PASS' if r['passed'] else 'FAIL'} | {cell(r['question'])} | {r['rank'] or '-'} | "
                     f"{r['refused']} | {r['fact_recall'] if r['fact_recall'] is not None else '-'} | "
                     f"{cell(r['answer'][:200])} | {cell('; '.join(r['cited']))} | {cell(r['why'])} |")
    return "\n".join(lines) + "\n"


def to_html(report: dict, baseline: dict | None = None, errors: Sequence[str] = ()) -> str:
    e = html.escape
    s = report["summary"]
    head = "<tr><th>指标 metric</th><th>本系统 assistant</th>" + ("<th>基线 naive baseline</th>" if baseline else "") + "</tr>"
    rows = "".join(f"<tr><td>{e(label)}</td><td>{e(str(s.get(key)))}</td>"
                   + (f"<td>{e(str(baseline['summary'].get(key)))}</td>" if baseline else "") + "</tr>"
                   for key, label in SUMMARY_LABELS)
    errs = "".join(f"<li>{e(x)}</li>" for x in errors)
    khead = "<tr><th>类型 kind</th>" + "".join(f"<th>{e(label)}</th>" for _, label in KIND_COLUMNS) + "</tr>"
    krows = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in kind_rows(report))
    qrows = "".join(
        f"<tr class='{'pass' if r['passed'] else 'fail'}'><td>{e(r['id'])}</td><td>{'PASS' if r['passed'] else 'FAIL'}</td>"
        f"<td>{e(r['question'])}</td><td>{r['rank'] or '-'}</td><td>{r['refused']}</td>"
        f"<td>{'-' if r['fact_recall'] is None else r['fact_recall']}</td><td>{e(r['answer'])}</td>"
        f"<td>{e('; '.join(r['cited']))}</td><td>{e(r['why'])}</td></tr>" for r in _rows(report))
    return (f"<!doctype html><html lang='zh-CN'><meta charset='utf-8'><title>{e(TITLE)}</title>"
            "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:1.5em}"
            "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}tr.fail{background:#fff0f0}</style>"
            f"<h1>{e(TITLE)}</h1><table>{head}{rows}</table>"
            + (f"<p>交叉验证 {report['cv']['folds']} 折 / Cross-validated: {report['cv']['folds']} folds.</p>"
               if report.get("cv") else "")
            + f"<h2>按问题类型 / By kind</h2><table>{khead}{krows}</table>"
            + (f"<h2>未评测的行 / Lines not evaluated</h2><ul>{errs}</ul>" if errors else "")
            + f"<h2>{e(QUESTIONS_HEADING)}</h2><table><tr><th>id</th><th>pass</th><th>question</th><th>gold rank</th>"
            f"<th>refused</th><th>facts</th><th>answer</th><th>citations</th><th>why</th></tr>{qrows}</table></html>")


def write_report(path: str | Path, report: dict, baseline: dict | None = None, errors: Sequence[str] = ()) -> None:
    path = Path(path)
    text = to_html(report, baseline, errors) if path.suffix.lower() in (".html", ".htm") else to_markdown(report, baseline, errors)
    path.write_text(text, encoding="utf-8")
