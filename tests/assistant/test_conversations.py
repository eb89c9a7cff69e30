"""The conversation and feedback store against SQLite and, when ASSISTANT_TEST_POSTGRES_URL is set (.ci/run starts
Debian's PostgreSQL), against PostgreSQL too."""
import os
import uuid

import pytest
import sqlalchemy as sa

from assistant.conversations import ConversationStore, to_markdown

PG = os.environ.get("ASSISTANT_TEST_POSTGRES_URL", "")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'conversations.sqlite3'}"
        return
    if not PG:
        pytest.skip("ASSISTANT_TEST_POSTGRES_URL is not set (.ci/run starts PostgreSQL)")
    name = f"t{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f"CREATE DATABASE {name}"))
    yield PG.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as c:
        c.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


ANSWER = {"answer": "新建公厕210座。[1]", "citations": [
    {"n": 1, "label": "《讲话》", "quote": "新建公厕210座", "doc_id": "speech", "char_start": 5, "char_end": 12}]}


def test_conversations_are_per_user_and_survive_a_new_store(url):
    store = ConversationStore(url)
    cid = store.create("alice", "  新建公厕\n多少座？ ")
    turn = store.add_turn("alice", cid, "新建公厕多少座？", ANSWER)
    assert store.add_turn("bob", cid, "偷看", ANSWER) is None  # not bob's
    again = ConversationStore(url)  # a restart: the schema is already there, the rows too
    assert [(c.id, c.title) for c in again.list("alice")] == [(cid, "新建公厕 多少座？")]
    assert again.list("bob") == [] and again.turns("bob", cid) == []
    assert again.turns("alice", cid) == [(turn, "新建公厕多少座？", ANSWER)]
    assert again.rename("alice", cid, "公厕") and not again.rename("bob", cid, "x")
    assert again.list("alice")[0].title == "公厕"
    assert not again.delete("bob", cid) and again.delete("alice", cid)
    assert again.list("alice") == [] and again.turns("alice", cid) == []


def test_feedback_keeps_the_question_answer_citations_and_settings(url):
    store = ConversationStore(url)
    cid = store.create("alice", "q")
    turn = store.add_turn("alice", cid, "新建公厕多少座？", ANSWER)
    assert store.rate("bob", cid, turn, -1, "偷评", "v1") is None
    store.rate("alice", cid, turn, 1, "", "v1")
    store.rate("alice", cid, turn, -1, "少了停车场\x00", "v1")  # a second vote replaces the first
    store.delete("alice", cid)  # the feedback outlives the conversation
    [fb] = store.feedback()
    assert (fb["user"], fb["rating"], fb["comment"], fb["question"], fb["settings_version"]) == (
        "alice", -1, "少了停车场", "新建公厕多少座？", "v1")
    assert fb["answer"] == ANSWER["answer"] and fb["citations"][0]["quote"] == "新建公厕210座"


def test_migrations_run_once_and_record_the_version(url):
    first = ConversationStore(url)
    assert first.migrate() == 1
    with first.engine.connect() as c:
        assert c.execute(sa.text("select count(*) from schema_version")).scalar() == 1


def test_every_table_is_bounded(url):
    """Conversations per user (their turns go with them), turns per conversation, idle browsers' conversations."""
    store = ConversationStore(url, max_per_user=3, max_turns=2)
    ids = [store.create("alice", f"第{i}个") for i in range(5)]
    assert {c.id for c in store.list("alice")} == set(ids[2:])
    assert store.add_turn("alice", ids[0], "q", ANSWER) is None  # a pruned conversation takes no turns
    assert [store.add_turn("alice", ids[4], "q", ANSWER) is not None for _ in range(3)] == [True, True, False]
    with store.engine.connect() as c:
        assert c.execute(sa.text("select count(*) from turns")).scalar() == 2
    old = ConversationStore(url, idle_days=0).create("browser:" + "a" * 32, "旧")
    ConversationStore(url, idle_days=0).create("browser:" + "b" * 32, "新")  # prunes browsers idle 0 days
    assert ConversationStore(url).list("browser:" + "a" * 32) == [] and old


def test_a_conversation_exports_as_markdown_with_its_sources():
    md = to_markdown("公厕", [(1, "新建公厕多少座？", ANSWER)])
    assert md.splitlines()[:4] == ["# 公厕", "", "## 问：新建公厕多少座？", ""]
    assert "新建公厕210座。[1]" in md and "- [1] 《讲话》：“新建公厕210座”" in md
