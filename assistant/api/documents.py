"""Documents: list, read, upload (POST), replace (PUT), remove (DELETE), and upload jobs."""
from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, File, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ingest.chunk import references

from .context import admin, bearer, ctx, public_meta

router = APIRouter()


@router.get("/api/documents", dependencies=[Depends(bearer)])
def api_documents(request: Request):
    docs = ctx(request).assistant().documents()
    return {"documents": [public_meta(d) for d in sorted(docs.values(), key=lambda d: d.doc_id)]}


@router.get("/api/documents/{doc_id}", dependencies=[Depends(bearer)])
def api_document(request: Request, doc_id: str):
    a = ctx(request).assistant()
    doc = a.document(doc_id)
    if doc is None:
        raise HTTPException(404, f"没有这个文档 / unknown document id: {doc_id}")
    chunks = [{"chunk_id": cid, "section": c.section_path, "article": c.article, "char_start": c.char_start,
               "char_end": c.char_end, "refers_to": references(c.text, c.article)}
              for cid, c in a.chunks(doc_id)]
    return public_meta(doc) | {"text": doc.text, "chunks": chunks}


async def _ingest(request: Request, files: list[UploadFile], wait: bool, replace: str | None = None):
    """Ingest off the event loop (one batch at a time); `wait=false` returns 202 and the job to follow."""
    c = ctx(request)
    limit = int(c.settings.ingest.max_file_mb * 1024 * 1024) + 1  # one byte over: the pipeline names the limit
    data = [(f.filename, await f.read(limit)) for f in files]
    job, done = await run_in_threadpool(c.uploads.submit, data, replace)  # writing files is blocking work too
    if not wait:
        return JSONResponse(job.to_dict(), status_code=202)
    await asyncio.wrap_future(done)
    if job.status != "done":
        raise HTTPException(500, f"索引失败 / ingest failed: {job.error}")
    return job.report.to_dict() | {"job": job.id}


@router.post("/api/documents", dependencies=[Depends(admin)])
async def api_upload(request: Request, files: list[UploadFile] = File(...), wait: bool = True):
    return await _ingest(request, files, wait)


@router.put("/api/documents/{doc_id}", dependencies=[Depends(admin)])
async def api_replace(request: Request, doc_id: str, file: UploadFile = File(...), wait: bool = True):
    """Replace one document's content with an uploaded file (keeps its id); the only way a file takes over an
    existing document."""
    c = ctx(request)
    if await run_in_threadpool(lambda: c.assistant().document(doc_id)) is None:
        raise HTTPException(404, f"没有这个文档 / unknown document id: {doc_id}")
    return await _ingest(request, [file], wait, doc_id)


@router.delete("/api/documents/{doc_id}", dependencies=[Depends(admin)])
def api_remove(request: Request, doc_id: str):
    if not ctx(request).uploads.remove(doc_id):
        raise HTTPException(404, f"没有这个文档 / unknown document id: {doc_id}")
    return {"removed": doc_id}


@router.get("/api/jobs/{job_id}", dependencies=[Depends(admin)])
def api_job(request: Request, job_id: str):
    job = ctx(request).uploads.job(job_id)
    if job is None:
        raise HTTPException(404, f"没有这个任务 / unknown job id: {job_id}")
    return job.to_dict()
