"""Issue 8 (hardening), item by item, and where each is tested. Everything here runs against a real uvicorn on
127.0.0.1 (tests/live.py), through raw HTTP and gradio_client; store-level items are tested where the store is.

 1. No file read through the chat ............ test_file_read.py
 2. Bounded work per request ................. test_limits.py (history, /v1 messages), test_ui_inputs.py (UI
                                                question limit, concurrent chat events), tests/ingest/test_embed.py
                                                (512-token cut); the load figures: python -m bench.load
 3. Uploads off the event loop, expansion limits  test_limits.py (jobs, /healthz meanwhile), test_errors.py
 4. /doc authenticated ....................... test_limits.py
 5. API keys mean something; uploaded bytes only  test_limits.py (refuse to start), test_ui_inputs.py (no
                                                server path read by the evaluation or upload functions)
 6. Trusted SSO header only from proxies ...... test_limits.py
 7. Prompt injection ......................... test_injection.py
 8. Errors never 500 / empty 200 ............. test_errors.py (surrogates, non-ASCII keys, parsers, streams,
                                                error shape), tests/ingest/test_pipeline.py (damaged index)
 9. Nothing lost by name ..................... test_limits.py (same name twice, 附件.txt), test_errors.py
                                                (explicit replace/remove), tests/ingest/test_pipeline.py
                                                (concurrent writers, prune scope)
10. Cleaning keeps content ................... tests/ingest/test_clean.py
11. BM25 saves, embedder configuration ....... tests/ingest/test_pipeline.py
12. Smaller items ............................ test_limits.py (Host header, empty keys, paths), test_errors.py
                                                (login rate limit, /docs, rejected uploads deleted),
                                                tests/ingest/test_pipeline.py (orphans at start)
"""
