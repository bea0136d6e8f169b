"""The worker, the jobs and the local-service starter (no bpy) against the loopback stand-in."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from .conftest import REPO_ROOT, load_addon_module
from .standin import free_port, png_bytes

client = load_addon_module("client")
jobs = load_addon_module("jobs")
worker = load_addon_module("worker")
local_service = load_addon_module("local_service")


def drain_until_done(pool, job_id: int, timeout: float = 20.0) -> list:
    """The job's messages up to its ``done``, with a deadline (as the poller does, bounded)."""
    messages, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in pool.drain(64):
            if message.job_id == job_id:
                messages.append(message)
                if message.kind == "done":
                    return messages
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} did not finish within {timeout} s: {messages}")


def connection(url: str, **kwargs):
    return jobs.Connection(client=client.ServiceClient(url, timeout=5), service=local_service.LocalService(), **kwargs)


def test_jobs_run_off_the_main_thread_and_always_end_with_done():
    pool = worker.Worker()
    seen = []

    def job(value, *, emit, cancelled):
        seen.append(threading.current_thread() is not threading.main_thread())
        emit("value", value * 2)

    assert [(m.kind, m.payload) for m in drain_until_done(pool, pool.submit("x", job, 21))] == [
        ("value", 42),
        ("done", None),
    ]
    assert seen == [True]

    def failing(*, emit, cancelled):
        raise client.ServiceError("The service said no.")

    assert [(m.kind, m.payload) for m in drain_until_done(pool, pool.submit("x", failing))] == [
        ("error", "The service said no."),
        ("done", None),
    ]

    def buggy(*, emit, cancelled):
        raise KeyError("oops")

    (error, _) = drain_until_done(pool, pool.submit("y", buggy))
    assert error.kind == "error" and error.payload == "Unexpected KeyError in the y job: 'oops'"


def test_cancel_marks_jobs_so_their_late_results_are_dropped():
    pool = worker.Worker()
    release = threading.Event()

    def slow(*, emit, cancelled):
        release.wait(5)
        emit("late", cancelled.is_set())

    first, second = pool.submit("search", slow), pool.submit("import", slow)
    assert pool.active() == [first, second] and pool.active("search") == [first]
    assert pool.cancel("search") == [first]
    assert not pool.is_active(first) and pool.is_active(second)
    release.set()
    assert drain_until_done(pool, first)[0].payload is True  # the job saw it; the poller drops it by id
    pool.finish(first)
    assert pool.active() == [second]
    pool.shutdown(timeout=2)
    assert pool.active() == []


def test_search_job_emits_results_then_thumbnails_a_few_at_a_time_and_caches_them(standin, query_png, tmp_path):
    pool = worker.Worker()
    standin.broken = {"table t1"}
    thumbnails = tmp_path / "thumbnails"
    arguments = dict(k=4, model="", rerank=0, thumbnails=thumbnails, with_info=True, query_is_temporary=False)
    messages = drain_until_done(
        pool, pool.submit("search", jobs.search, connection(standin.url), query_png, "image", **arguments)
    )
    kinds = [message.kind for message in messages]
    assert kinds[:2] == ["info", "results"] and kinds[-1] == "done"
    result = messages[1].payload
    assert [hit.shape_id for hit in result.hits] == ["chair/c1", "box/crate", "table t1", "lamp/l 2"]
    done = {m.payload[0]: m.payload[1] for m in messages if m.kind == "thumbnail"}
    failed = {m.payload[0]: m.payload[1] for m in messages if m.kind == "thumbnail_failed"}
    assert sorted(done) == ["box/crate", "chair/c1", "lamp/l 2"] and list(failed) == ["table t1"]
    assert "Thumbnail failed" in failed["table t1"] and "HTTP 500" in failed["table t1"]
    assert all(path.read_bytes() == standin.thumbnail and path.parent == thumbnails for path in done.values())
    downloads = len([p for p in standin.paths() if p.endswith("/thumbnail?model=cmah-32")])
    assert downloads == 4
    arguments["with_info"] = False
    drain_until_done(pool, pool.submit("search", jobs.search, connection(standin.url), query_png, "image", **arguments))
    assert len([p for p in standin.paths() if "/thumbnail" in p]) == downloads + 1  # only the broken one again
    assert query_png.exists()


def test_a_temporary_query_is_removed_even_when_the_search_fails(tmp_path):
    folder = tmp_path / "query"
    folder.mkdir()
    (folder / "reference.png").write_bytes(png_bytes())
    pool = worker.Worker()
    arguments = dict(k=4, model="", rerank=0, thumbnails=tmp_path, with_info=False, query_is_temporary=True)
    url = "http://127.0.0.1:9"  # the discard port: nothing listens
    messages = drain_until_done(
        pool, pool.submit("search", jobs.search, connection(url), folder / "reference.png", "image", **arguments)
    )
    assert messages[0].kind == "error" and "not answering" in messages[0].payload
    assert not folder.exists()


def test_mesh_job_downloads_once_into_the_cache(standin, tmp_path):
    pool = worker.Worker()
    hit = standin.hit(1, "box/crate", "cmah-32")
    for _ in range(2):
        (mesh, _) = drain_until_done(
            pool,
            pool.submit("import", jobs.fetch_mesh, connection(standin.url), "box/crate", hit["mesh_url"], tmp_path),
        )
        assert mesh.kind == "mesh" and mesh.payload[0] == "box/crate" and mesh.payload[1].read_bytes() == standin.mesh
    assert len([p for p in standin.paths() if p.endswith("/mesh?model=cmah-32")]) == 1


def test_local_service_is_started_when_not_answering_and_stopped_after(tmp_path):
    port = free_port()
    script = tmp_path / "serve.py"
    script.write_text(
        "import sys, threading\n"
        f"sys.path.insert(0, {str(REPO_ROOT)!r})\n"
        "from tests.blender_addon.standin import StandIn\n"
        f"StandIn(port={port}).__enter__()\n"
        "threading.Event().wait()\n"
    )
    service = local_service.LocalService()
    service_client = client.ServiceClient(f"http://127.0.0.1:{port}", timeout=2)
    log = tmp_path / "logs" / "serve.log"
    try:
        assert service.ensure_running(service_client, f"{sys.executable} {script}", log, 30, threading.Event())
        pid = service.pid
        assert pid is not None and service_client.info().default_model == "cmah-32"
        assert not service.ensure_running(service_client, "unused", log, 30, threading.Event())  # already up
    finally:
        service.stop()
    assert service.pid is None
    with pytest.raises(client.ServiceError, match="not answering"):
        service_client.health()


def test_local_service_failures_are_explained(tmp_path):
    service = local_service.LocalService()
    service_client = client.ServiceClient("http://127.0.0.1:9", timeout=2)
    log = tmp_path / "serve.log"
    never = threading.Event()
    with pytest.raises(client.ServiceError, match="not answering"):
        service.ensure_running(service_client, "", log, 5, never)  # no command: the original error
    with pytest.raises(client.ServiceError, match="could not be started"):
        service.ensure_running(service_client, "/nonexistent/hf-cmah serve", log, 5, never)
    with pytest.raises(client.ServiceError, match="cannot be parsed"):
        service.ensure_running(service_client, 'hf-cmah "unclosed', log, 5, never)
    crash = f"{sys.executable} -c \"import sys; print('no such index: lib.index'); sys.exit(3)\""
    with pytest.raises(client.ServiceError, match=r"exited with code 3.*no such index: lib\.index"):
        service.ensure_running(service_client, crash, log, 20, never)
    start = time.monotonic()
    with pytest.raises(client.ServiceError, match=r"did not answer .* within 1 s"):
        service.ensure_running(service_client, f'{sys.executable} -c "import time; time.sleep(30)"', log, 1, never)
    assert time.monotonic() - start < 5
    service.stop()
