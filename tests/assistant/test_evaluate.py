import json
import subprocess
import sys

import pytest

from assistant.evaluate import load_questions, to_html, write_report
from tests.conftest import QUESTIONS, REALISTIC, ROOT

# Floors from the 5-fold cross-validated measurement (README "Evaluating"), each a question or two below what
# was measured; (metric, floor) pairs, and for false_refusal_rate a ceiling.
# The development set's floors are 16ead3c's figures (Recall@5, fact recall) or one question below them (the issue:
# no worse than before), except refusal: 16ead3c's 1.0 came from a threshold fitted on these questions;
# cross-validated it is 0.9, the floor.
DEV_GATE = {"recall_at_k": 0.96, "recall_at_1": 0.83, "mrr": 0.88, "fact_recall": 0.96, "pass_rate": 0.95,
            "refusal_accuracy": 0.9}
REALISTIC_GATE = {"recall_at_k": 0.92, "fact_recall": 0.79, "pass_rate": 0.78}
KIND_GATE = {  # kind -> {metric: floor}
    "everyday": {"pass_rate": 0.65},
    "list": {"pass_rate": 0.7},
    "penalty": {"pass_rate": 0.83},
    "number": {"pass_rate": 0.83},
    "article_lookup": {"pass_rate": 0.87},
    "unanswerable_off_topic": {"refusal_accuracy": 1.0},
    "clutter": {"refusal_accuracy": 1.0},
    "unanswerable_on_topic": {"refusal_accuracy": 0.7},  # the done-when: 10 of 14
}


def test_dev_set_shape():
    qs, errors = load_questions(QUESTIONS)
    assert not errors and len(qs) >= 50
    assert sum(1 for q in qs if not q.facts) >= 8 and sum(1 for q in qs if len(q.turns) > 1) >= 5


@pytest.mark.integration
def test_quality_gate_cross_validated(corpus_assistant, artifacts):
    """Both question sets, 5 folds: every weight and threshold is fitted on the folds a question is not in."""
    from assistant.crossval import cross_validate

    if not REALISTIC.exists():
        pytest.fail(f"the realistic question set is expected at {REALISTIC}")
    qs = load_questions(REALISTIC)[0] + load_questions(QUESTIONS)[0]
    report = cross_validate(corpus_assistant, qs, corpus_assistant.documents(), 5, 5)
    write_report(artifacts / "eval-report-cv.md", report)
    failed = [q["id"] for q in report["questions"] if not q["passed"]]
    dev, real = report["by_source"][QUESTIONS.name], report["by_source"][REALISTIC.name]
    for summary, gate in ((dev, DEV_GATE), (real, REALISTIC_GATE), *((report["by_kind"][k], g) for k, g in KIND_GATE.items())):
        for key, floor in gate.items():
            assert summary[key] >= floor, (key, summary[key], floor, failed)
    assert dev["false_refusal_rate"] <= 0.05 and real["false_refusal_rate"] <= 0.05, failed
    assert dev["answers_with_unverified"] == 0 and real["answers_with_unverified"] == 0  # quotes are never flagged
    assert dev["answers_ending_at_lead_in"] == 0 and real["answers_ending_at_lead_in"] == 0  # lists come whole
    assert report["summary"]["citation_validity"] == 1.0


def test_bad_lines_name_their_line_and_the_rest_is_kept(tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_text("\n".join([
        json.dumps({"id": "ok", "question": "新建公厕多少座？", "facts": ["210"]}, ensure_ascii=False),
        "{not json",
        json.dumps({"id": "nofacts", "question": "问"}),
        json.dumps({"id": "wrong", "question": "问", "facts": "210"}),
        json.dumps({"id": "noq", "facts": []}),
        json.dumps({"id": "turns", "turns": ["a", "b"], "facts": [], "extra": 1}),
    ]), encoding="utf-8")
    qs, errors = load_questions(f)
    assert [q.id for q in qs] == ["ok", "turns"]
    assert [e.split(":")[0] for e in errors] == ["line 2", "line 3", "line 4", "line 5"]
    assert "missing field 'facts'" in errors[1] and "'facts' must be a list" in errors[2]


@pytest.mark.integration
def test_eval_cli_json_and_reports(corpus_settings, tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_text(json.dumps({"id": "a", "question": "新建公厕多少座？", "facts": ["210"], "evidence": "新建公厕210座"},
                            ensure_ascii=False) + "\n{bad\n" + json.dumps({"id": "b", "question": "今天天气怎么样？", "facts": []},
                                                                           ensure_ascii=False) + "\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "app.py", "eval", str(f), "--index", corpus_settings.store.index_dir, "--json",
                          "--report", str(tmp_path / "r.html")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data["summary"]) >= {"n", "recall_at_1", "recall_at_k", "mrr", "fact_recall", "refusal_accuracy",
                                    "false_refusal_rate", "citation_validity", "citation_precision",
                                    "latency_ms_p50", "latency_ms_p95"}
    assert data["summary"]["n"] == 2 and data["summary"]["recall_at_k"] == 1.0 and data["summary"]["refusal_accuracy"] == 1.0
    assert "by_kind" in data and "by_source" in data and data["summary"]["answers_with_unverified"] == 0
    assert "line 2" in out.stderr
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Evaluation report" in html and "line 2" in html


def test_html_report_escapes_and_puts_failures_first():
    rep = {"summary": {"n": 2}, "questions": [
        {"id": "good", "passed": True, "question": "q", "rank": 1, "refused": False, "fact_recall": 1.0, "answer": "a",
         "cited": [], "why": ""},
        {"id": "bad", "passed": False, "question": "<script>x</script>", "rank": None, "refused": True,
         "fact_recall": 0.0, "answer": "", "cited": [], "why": "refused"}]}
    html = to_html(rep)
    assert "<script>x" not in html and html.index("bad") < html.index("good")
