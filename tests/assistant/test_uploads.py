"""The upload service on its own (hash embedder): per-file progress and reasons an admin can read."""
from assistant.uploads import UploadService, explain
from ingest.pipeline import Pipeline
from ingest.store import ChromaIndex
from tests.conftest import SMALL_REG
from tests.fakes import HashEmbedder


def test_a_job_counts_its_files_and_the_chunks_they_made(tmp_path):
    pipeline = Pipeline(ChromaIndex(tmp_path / "index"), HashEmbedder())
    service = UploadService(tmp_path / "index" / "uploads", lambda: pipeline)
    job, done = service.submit([("a.txt", SMALL_REG.encode()), ("empty.txt", b""),
                                ("b.txt", SMALL_REG.replace("停车", "充电").encode())])
    done.result(timeout=60)
    made = [d.chunks for d in job.report.documents if d.status == "added"]
    assert len(made) == 2 and job.chunks == sum(made) > 0 and (job.done, job.total) == (3, 3)
    assert job.to_dict()["chunks"] == sum(made)


def test_reasons_read_in_chinese_with_the_english_after():
    assert explain("empty file") == "空文件 / empty file"
    assert explain("unsupported file type '.xlsx' (supported: .txt)").startswith("不支持的文件类型 / unsupported")
    assert explain("same text as 办法.txt; indexed once as 办法").startswith("与已收录的文档内容相同，只索引一次 / same text")
    assert explain("文件名无效 / invalid file name") == "文件名无效 / invalid file name"  # already both
    assert explain("KeyError: 'x'") == "索引失败 / KeyError: 'x'" and explain("") == ""
