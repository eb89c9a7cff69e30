"""The chat's conversations (Gradio, thin): kept server-side per user in the ConversationStore, listed in a side
panel (open, rename, delete), rated 👍/👎 with an optional comment, exported as Markdown with their sources."""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import uuid
from pathlib import Path

import gradio as gr

from .answer import Answer
from .conversations import ConversationStore, to_markdown
from .settings import Settings
from .ui_tabs import download_dir


def settings_version(settings: Settings) -> str:
    """What the answers depended on (embedder, retrieval, answer and model settings), as a short digest."""
    parts = {k: getattr(settings, k).model_dump() for k in ("embedding", "retrieval", "answer")}
    parts["llm"] = {"model": settings.llm.model, "base_url": settings.llm.base_url, "quotes": settings.llm.quotes}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def user_of(request: gr.Request | None, browser_id, sso: bool = False) -> str | None:
    """Whose conversations: the user the SSO proxy names (`sso`), else this browser's random id - under a shared
    UI login every browser keeps its own. None when there is no valid id (a bare API call): the turn is answered
    and not kept."""
    name = getattr(request, "username", None) if request is not None else None
    if name and sso:
        name = str(name)
        return f"user:{name}" if len(name) <= 150 else f"user:sha256:{hashlib.sha256(name.encode()).hexdigest()}"
    if isinstance(browser_id, str) and re.fullmatch(r"[0-9a-f]{32}", browser_id):
        return f"browser:{browser_id}"
    return None


def browser_secret(settings: Settings) -> str:
    """The key Gradio encrypts the stored browser id with: the setting, else one made once and kept in the index directory
    (a new key on every start would make every browser a stranger after a restart)."""
    if settings.server.browser_secret:
        return settings.server.browser_secret
    path = Path(settings.store.index_dir) / "browser-state.key"
    if not path.exists():  # written whole, then linked in: two processes starting at once read the same key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(16))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


class Sessions:
    def __init__(self, store: ConversationStore, settings: Settings) -> None:
        self.store, self.version = store, settings_version(settings)
        self.secret = browser_secret(settings)
        self.sso = bool(settings.server.trusted_user_header)

    def user(self, request, browser_id) -> str | None:
        return user_of(request, browser_id, self.sso)

    def keep(self, request, browser_id: str, conv: str | None, question: str, answer: Answer) -> tuple[str, int | None]:
        """Store one answered turn, in a new conversation titled by its first question if there is none yet."""
        user = self.user(request, browser_id)
        if user is None:
            return conv, None
        kept = answer.to_dict()
        turn = self.store.add_turn(user, conv, question, kept) if conv else None  # None: not this user's, or gone
        if turn is None:
            conv = self.store.create(user, question)
            turn = self.store.add_turn(user, conv, question, kept)
        return conv, turn

    def choices(self, request, browser_id: str, selected: str | None = None):
        user = self.user(request, browser_id)
        items = [(c.title, c.id) for c in self.store.list(user)] if user else []
        return gr.update(choices=items, value=selected if any(i == selected for _, i in items) else None)

    def opened(self, request, browser_id: str, conv: str | None) -> tuple[list, list, list[int]]:
        """A stored conversation as (plain history, answers, turn ids), for the chat to render."""
        user = self.user(request, browser_id)
        rows = self.store.turns(user, conv or "") if user else []
        history, answers = [], []
        for _, q, a in rows:
            history += [{"role": "user", "content": q}, {"role": "assistant", "content": a.get("answer", "")}]
            answers.append(Answer.from_dict(q, a))
        return history, answers, [i for i, _, _ in rows]

    def rate(self, browser_id: str, conv: str | None, turn_ids: list, comment: str, data: gr.LikeData,
             request: gr.Request = None):
        """👍/👎 on an answer: stored with its question, answer, citations and the settings version."""
        index = data.index[0] if isinstance(data.index, (list, tuple)) else data.index
        turn = int(index) // 2  # user, assistant, user, assistant…
        user = self.user(request, browser_id)
        if data.liked is None or not conv or user is None or not 0 <= turn < len(turn_ids or []) \
                or turn_ids[turn] is None:
            return "未记录：请先提问。", gr.update()
        rating = 1 if data.liked else -1
        saved = self.store.rate(user, conv, turn_ids[turn], rating, str(comment or "").strip(), self.version)
        # the comment went with this rating: the box is cleared for the next
        return ("已记录反馈，谢谢。", "") if saved else ("未记录：这条回答不在您的对话中。", gr.update())

    def export(self, conv: str | None, browser_id: str, request: gr.Request = None):
        user = self.user(request, browser_id)
        rows = self.store.turns(user, conv or "") if user else []
        if not rows:
            raise gr.Error("当前没有可导出的对话。")
        title = next((c.title for c in self.store.list(user) if c.id == conv), "对话")
        out = download_dir("export-")
        path = out / f"{_file_name(title)}.md"
        path.write_text(to_markdown(title, rows), encoding="utf-8")
        return gr.update(value=str(path), visible=True)


    def wire(self, open_fn, empty, outs, browser_id, conv, turn_ids, listed, new, rename, title, delete, export,
             exported, chat, comment, rated) -> None:
        """The side panel's events; `outs[:-1]` are the chat's outputs without the list, `empty` clears them."""
        def relist(bid: str, request: gr.Request = None):
            return self.choices(request, bid)

        def renamed(c: str | None, t: str, bid: str, request: gr.Request = None):
            if user := self.user(request, bid):
                self.store.rename(user, c or "", t or "")
            return self.choices(request, bid, c)

        def deleted(c: str | None, bid: str, request: gr.Request = None) -> None:
            if user := self.user(request, bid):
                self.store.delete(user, c or "")

        new.click(empty, None, outs[:-1]).then(relist, browser_id, listed)
        listed.input(open_fn, [listed, browser_id], outs[:-1])
        chat.like(self.rate, [browser_id, conv, turn_ids, comment], [rated, comment])
        rename.click(renamed, [conv, title, browser_id], listed)
        delete.click(deleted, [conv, browser_id], None).then(empty, None, outs[:-1]).then(relist, browser_id, listed)
        export.click(self.export, [conv, browser_id], exported)


def new_browser_id(current) -> str:
    """This browser's id: the one it has, if it is one of ours (32 hex digits), else a new one."""
    return current if isinstance(current, str) and re.fullmatch(r"[0-9a-f]{32}", current) else uuid.uuid4().hex


def _file_name(title: str) -> str:
    return "".join(ch for ch in title if ch.isalnum() or ch in "-_（）()")[:40] or "对话"
