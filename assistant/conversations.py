"""Conversations and feedback, per user, in a real database: SQLite in the index directory by default, any
SQLAlchemy URL (PostgreSQL) when several app nodes share one Chroma server. The schema is migrated on start."""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

import sqlalchemy as sa

meta = sa.MetaData()
schema_version = sa.Table("schema_version", meta, sa.Column("version", sa.Integer, nullable=False))
conversations = sa.Table(
    "conversations", meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("user", sa.String(200), nullable=False, index=True),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("updated", sa.Float, nullable=False))
turns = sa.Table(
    "turns", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String(32), sa.ForeignKey("conversations.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("answer", sa.Text, nullable=False),  # Answer.to_dict() as JSON: text, citations, mode, ...
    sa.Column("created", sa.Float, nullable=False))
feedback = sa.Table(
    "feedback", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user", sa.String(200), nullable=False),
    sa.Column("conversation_id", sa.String(32), nullable=True),  # kept when the conversation is deleted
    sa.Column("turn_id", sa.Integer, nullable=False),  # one rating per user and answer: a second vote replaces it
    sa.Column("rating", sa.Integer, nullable=False),  # +1 / -1
    sa.Column("comment", sa.Text, nullable=False, default=""),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("answer", sa.Text, nullable=False),
    sa.Column("citations", sa.Text, nullable=False),  # JSON list of {label, quote, doc_id, char_start, char_end}
    sa.Column("settings_version", sa.String(64), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.UniqueConstraint("user", "turn_id", name="feedback_one_per_answer"))

# Each step takes the schema from version i to i + 1, in one transaction. A new column or table is a new step at
# the end; a released step is never edited.
MIGRATIONS = [
    lambda c: meta.create_all(c, tables=[conversations, turns, feedback]),
]


@dataclass
class Conversation:
    id: str
    title: str
    updated: float


class ConversationStore:
    """Every table is bounded: conversations per user, turns per conversation, one rating per user and answer,
    and conversations of browsers without a login go after `idle_days` unused."""

    def __init__(self, url: str, max_per_user: int = 200, max_turns: int = 500, idle_days: float = 180) -> None:
        self.engine = sa.create_engine(url, future=True, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self.max_per_user, self.max_turns, self.idle_days = max_per_user, max_turns, idle_days
        self.migrate()

    def migrate(self) -> int:
        """Bring the schema to the latest version; returns it. Safe to run on every start, on every node."""
        with self.engine.begin() as c:
            if self.engine.dialect.name == "postgresql":  # two nodes starting at once: one migrates, one waits
                c.execute(sa.text("SELECT pg_advisory_xact_lock(7311001)"))
            schema_version.create(c, checkfirst=True)
            current = c.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0
            for version in range(current, len(MIGRATIONS)):
                MIGRATIONS[version](c)
                c.execute(schema_version.insert().values(version=version + 1))
            return len(MIGRATIONS)

    # -- conversations -------------------------------------------------------------------------------------------
    def create(self, user: str, title: str) -> str:
        """A new conversation; a user's oldest beyond `max_per_user` go (no table grows without bound)."""
        cid, now = uuid.uuid4().hex, time.time()
        with self.engine.begin() as c:
            c.execute(conversations.insert().values(id=cid, user=user, title=_title(title), created=now, updated=now))
            old = c.execute(sa.select(conversations.c.id).where(conversations.c.user == user)
                            .order_by(conversations.c.updated.desc(), conversations.c.created.desc())
                            .offset(self.max_per_user)).scalars().all()
            old += c.execute(sa.select(conversations.c.id).where(  # browsers not seen for idle_days
                conversations.c.user.like("browser:%"),
                conversations.c.updated < now - self.idle_days * 86400)).scalars().all()
            if old:
                c.execute(turns.delete().where(turns.c.conversation_id.in_(old)))
                c.execute(conversations.delete().where(conversations.c.id.in_(old)))
        return cid

    def list(self, user: str) -> list[Conversation]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(conversations.c.id, conversations.c.title, conversations.c.updated)
                             .where(conversations.c.user == user).order_by(conversations.c.updated.desc()))
            return [Conversation(*r) for r in rows]

    def rename(self, user: str, cid: str, title: str) -> bool:
        with self.engine.begin() as c:
            return c.execute(conversations.update().where(_own(user, cid)).values(title=_title(title))).rowcount == 1

    def delete(self, user: str, cid: str) -> bool:
        with self.engine.begin() as c:
            if c.execute(sa.select(conversations.c.id).where(_own(user, cid))).first() is None:
                return False
            c.execute(turns.delete().where(turns.c.conversation_id == cid))
            c.execute(conversations.delete().where(conversations.c.id == cid))
            return True

    def add_turn(self, user: str, cid: str, question: str, answer: dict) -> int | None:
        """Keep a question and its answer (Answer.to_dict()); None when the conversation is not the user's."""
        with self.engine.begin() as c:
            if c.execute(conversations.update().where(_own(user, cid)).values(updated=time.time())).rowcount != 1:
                return None
            if c.execute(sa.select(sa.func.count()).where(turns.c.conversation_id == cid)).scalar() >= self.max_turns:
                return None  # a full conversation: the answer is shown, not kept
            return c.execute(turns.insert().values(conversation_id=cid, question=_clean(question), created=time.time(),
                                                   answer=_clean(json.dumps(answer, ensure_ascii=False)))
                             ).inserted_primary_key[0]

    def turns(self, user: str, cid: str) -> list[tuple[int, str, dict]]:
        """(turn id, question, answer dict) in order; [] for a conversation that is not the user's."""
        with self.engine.connect() as c:
            rows = c.execute(sa.select(turns.c.id, turns.c.question, turns.c.answer)
                             .join(conversations, conversations.c.id == turns.c.conversation_id)
                             .where(_own(user, cid)).order_by(turns.c.id))
            return [(i, q, json.loads(a)) for i, q, a in rows]

    # -- feedback ------------------------------------------------------------------------------------------------
    def rate(self, user: str, cid: str, turn_id: int, rating: int, comment: str, settings_version: str) -> int | None:
        """👍 (+1) or 👎 (-1) on one of the user's answers, stored with its question, answer and citations."""
        with self.engine.begin() as c:
            row = c.execute(sa.select(turns.c.question, turns.c.answer)
                            .join(conversations, conversations.c.id == turns.c.conversation_id)
                            .where(_own(user, cid), turns.c.id == turn_id)).first()
            if row is None:
                return None
            answer = json.loads(row.answer)
            cites = [{k: x.get(k) for k in ("label", "quote", "doc_id", "char_start", "char_end")}
                     for x in answer.get("citations", [])]
            c.execute(feedback.delete().where(feedback.c.user == user, feedback.c.turn_id == turn_id))
            return c.execute(feedback.insert().values(
                user=user, conversation_id=cid, turn_id=turn_id, rating=1 if rating > 0 else -1,
                comment=_clean(comment)[:2000],
                question=row.question, answer=answer.get("answer", ""), settings_version=settings_version,
                citations=json.dumps(cites, ensure_ascii=False), created=time.time())).inserted_primary_key[0]

    def feedback(self, limit: int = 10000) -> list[dict]:
        """The latest `limit` ratings, oldest first."""
        with self.engine.connect() as c:
            latest = sa.select(feedback).order_by(feedback.c.id.desc()).limit(limit).subquery()
            rows = c.execute(sa.select(latest).order_by(latest.c.id)).mappings().all()
            return [dict(r) | {"citations": json.loads(r["citations"])} for r in rows]


def _own(user: str, cid: str):
    return sa.and_(conversations.c.id == cid, conversations.c.user == user)


def _title(text: str) -> str:
    return " ".join(_clean(text).split())[:60] or "新对话"


def _clean(text: str) -> str:
    """Without NUL and other control characters (PostgreSQL refuses NUL in text; SQLite keeps it)."""
    return "".join(ch for ch in text if ch in "\n\t" or ord(ch) >= 32)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers and the one writer do not block each other
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def to_markdown(title: str, rows: list[tuple[int, str, dict]]) -> str:
    """A conversation as Markdown: each question, its answer and the passages it cites."""
    out = [f"# {title}", ""]
    for _, question, answer in rows:
        out += [f"## 问：{question}", "", answer.get("answer", ""), ""]
        cites = answer.get("citations") or []
        if cites:
            out += ["来源："] + [f"- [{c['n']}] {c.get('label', '')}：“{c.get('quote', '')}”" for c in cites] + [""]
    return "\n".join(out)


def draft_questions(rows: list[dict]) -> list[dict]:
    """👎 feedback as draft test questions for the evaluator: the question, the answer that was judged wrong and
    the comment. It has no `facts`: the evaluator refuses a draft line until a person writes them (a draft is
    never a gold answer; [] would mean "the documents do not answer")."""
    return [{"id": f"feedback-{r['id']}", "question": r["question"], "kind": "feedback", "note": r["comment"],
             "rejected_answer": r["answer"], "todo": "填写 facts：正确答案的要点（文档无法回答时写 []）"}
            for r in rows if r["rating"] < 0]
