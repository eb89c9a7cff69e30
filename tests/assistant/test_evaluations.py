"""The evaluation service: what a question file that cannot be used says, before any question is asked."""
import json

import pytest

from assistant import evaluations


def test_bad_lines_and_unreadable_files_are_named_and_the_rest_loads(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"question": "问一", "facts": []}, ensure_ascii=False) + "\n{broken\n", encoding="utf-8")
    gbk = tmp_path / "gbk.jsonl"
    gbk.write_bytes(json.dumps({"question": "问二", "facts": []}, ensure_ascii=False).encode("gbk"))
    qs, errors = evaluations.read_questions([good, gbk, tmp_path / "missing.jsonl"], names=["上传的.jsonl"])
    assert [q.turns for q in qs] == [["问一"]]
    assert errors[0].startswith("上传的.jsonl: line 2: not valid JSON")
    assert errors[1].startswith("gbk.jsonl: 不是 UTF-8") and "UTF-8" in errors[1]
    assert errors[2].startswith("missing.jsonl: 无法读取")


@pytest.mark.parametrize("content", [b"", b"\xff\xfe\x00binary\x00", "{}\n".encode(), "没有问题\n".encode("gbk")])
def test_a_file_with_no_valid_question_says_so_instead_of_empty_metrics(tmp_path, content):
    f = tmp_path / "q.jsonl"
    f.write_bytes(content)
    with pytest.raises(evaluations.CannotEvaluate, match="没有可评测的问题"):
        evaluations.run(None, [f], k=5)  # nothing is asked: no assistant is needed
