"""The add-on's HTTP client (no bpy) against the loopback stand-in: requests, parsing and every error path."""

from __future__ import annotations

import email.parser
import email.policy
import socket
import time

import pytest

from .conftest import load_addon_module
from .standin import TOKEN, glb_box

client = load_addon_module("client")
ServiceClient, ServiceError = client.ServiceClient, client.ServiceError


def test_info_and_image_search_parse_the_contract(standin, query_png):
    service = ServiceClient(standin.url + "/")
    info = service.info()
    assert info.default_model == "cmah-32" and [model.name for model in info.models] == ["cmah-32", "cmah-64"]
    assert info.models[1].code_bits == 64 and info.models[0].shapes == 4 and info.writes
    result = service.search_image(query_png, k=3, model="cmah-64", rerank=0)
    assert (result.model, result.code_bits, result.query_kind) == ("cmah-64", 64, "image")
    assert [hit.shape_id for hit in result.hits] == ["chair/c1", "box/crate", "table t1"]
    assert result.hits[0].distance == 0 and result.hits[0].score is None
    request = standin.requests[-1]
    assert request.fields == {"k": "3", "rerank": "0", "model": "cmah-64", **_lists(request.fields)}
    assert [(name, filename) for name, filename, _ in request.files] == [("image", "query.png")]
    assert request.files[0][2] == query_png.read_bytes()


def _lists(fields: dict) -> dict:
    return {key: value for key, value in fields.items() if key.endswith("_list")}


def test_shape_search_sends_the_file_under_shape_with_its_suffix(standin, tmp_path):
    mesh = tmp_path / "query.glb"
    mesh.write_bytes(glb_box())
    result = ServiceClient(standin.url).search_shape(mesh, k=2)
    assert result.query_kind == "shape" and len(result.hits) == 2
    assert [(name, filename) for name, filename, _ in standin.requests[-1].files] == [("shape", "query.glb")]
    assert "model" not in standin.requests[-1].fields  # the service's default model


def test_shape_urls_quote_each_segment_and_downloads_are_atomic(standin, tmp_path):
    service = ServiceClient(standin.url)
    assert client.shape_path("lamp/l 2") == "/api/v1/shapes/lamp/l%202"
    hit = standin.hit(1, "lamp/l 2", "cmah-32")
    path = service.download(hit["mesh_url"], tmp_path / "cache" / "lamp.glb")
    assert standin.paths()[-1] == "/api/v1/shapes/lamp/l%202/mesh?model=cmah-32"
    assert path.read_bytes() == standin.mesh and sorted(p.name for p in path.parent.iterdir()) == ["lamp.glb"]
    assert service.download(standin.url + hit["thumbnail_url"], tmp_path / "t.png").read_bytes() == standin.thumbnail


def test_links_to_other_hosts_are_not_followed(standin, tmp_path):
    with pytest.raises(ServiceError, match="outside"):
        ServiceClient(standin.url).download("http://example.com/x.glb", tmp_path / "x.glb")


def test_adding_shapes_needs_the_token(standin, tmp_path):
    mesh = tmp_path / "000-crate.glb"
    mesh.write_bytes(glb_box())
    with pytest.raises(ServiceError, match="token") as refused:
        ServiceClient(standin.url).add_shapes([mesh], shape_ids=["mine/crate"])
    assert refused.value.code == "unauthorized" and not standin.requests  # refused before any request
    with pytest.raises(ServiceError, match=r"The token is wrong\. \(HTTP 403, forbidden\)") as wrong:
        ServiceClient(standin.url, token="nope").add_shapes([mesh], shape_ids=["mine/crate"])
    assert wrong.value.status == 403 and wrong.value.field == "Authorization"
    service = ServiceClient(standin.url, token=TOKEN)
    answer = service.add_shapes([mesh], shape_ids=["mine/crate"], labels=["box"], model="cmah-32")
    assert answer == {"model": "cmah-32", "added": ["mine/crate"], "count": 5}
    assert standin.requests[-1].headers["Authorization"] == f"Bearer {TOKEN}"
    assert standin.shapes["mine/crate"] == "box"
    with pytest.raises(ServiceError, match="exists already") as conflict:
        service.add_shapes([mesh], shape_ids=["mine/crate"])
    assert conflict.value.status == 409 and conflict.value.field == "shape_ids"


def test_connection_refused_names_the_url_and_the_fix():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ServiceError, match=rf"127\.0\.0\.1:{port} is not answering.*hf-cmah serve") as error:
        ServiceClient(f"http://127.0.0.1:{port}").info()
    assert error.value.code == "unreachable"


def test_a_wrong_url_is_told_apart_from_a_service_error(standin, query_png):
    with pytest.raises(ServiceError, match=r"not found \(HTTP 404\).*hf-cmah service") as error:
        ServiceClient(standin.url + "/wrong/prefix").info()
    assert error.value.code == "not_found"
    with pytest.raises(ServiceError, match=r"There is no model named 'cmah-8'.*HTTP 404, unknown_model") as refused:
        ServiceClient(standin.url).search_image(query_png, k=3, model="cmah-8")
    assert refused.value.field == "model"


def test_a_4xx_carries_the_services_message_and_field(standin, query_png):
    with pytest.raises(
        ServiceError, match=r"refused the image search: k must be .*\(HTTP 422, invalid_input\)"
    ) as error:
        ServiceClient(standin.url).search_image(query_png, k=0)
    assert (error.value.status, error.value.field) == (422, "k")


def test_a_service_that_never_answers_times_out_in_bounded_time():
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        start = time.monotonic()
        with pytest.raises(ServiceError, match=r"did not answer within 0\.5 s") as error:
            ServiceClient(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.5).info()
    assert error.value.code == "timeout" and time.monotonic() - start < 5


def test_a_non_image_file_is_refused_before_any_upload(standin, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    for path, match in ((text, "is not an image file"), (tmp_path / "absent.png", "does not exist")):
        with pytest.raises(ServiceError, match=match):
            ServiceClient(standin.url).search_image(path, k=3)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ServiceError, match="is empty"):
        client.image_content_type(tmp_path / "empty.png")
    assert not standin.requests
    assert client.image_content_type(_write(tmp_path / "a.webp", b"RIFF\0\0\0\0WEBPVP8 ")) == "image/webp"
    with pytest.raises(ServiceError, match=r"suffix '\.txt'"):
        client.check_shape_file(_write(tmp_path / "mesh.txt", b"v 0 0 0"))


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_busy_is_retried_a_bounded_number_of_times(standin, query_png):
    standin.busy = 2
    assert len(ServiceClient(standin.url).search_image(query_png, k=1).hits) == 1
    standin.busy = client.BUSY_RETRIES + 1
    with pytest.raises(ServiceError, match="queue is full") as error:
        ServiceClient(standin.url).search_image(query_png, k=1)
    assert error.value.code == "busy" and standin.busy == 0


def test_answers_that_are_not_the_services_are_explained(standin, query_png):
    standin.override["/api/v1/info"] = (200, "text/html", b"<html>a router's login page</html>")
    with pytest.raises(ServiceError, match=r"did not answer JSON \(text/html\).*hf-cmah service"):
        ServiceClient(standin.url).info()
    standin.override["/api/v1/info"] = (200, "application/json", b'{"version": "9"}')
    with pytest.raises(ServiceError, match=r"without the expected fields.*compatible version"):
        ServiceClient(standin.url).info()
    standin.override["/api/v1/search"] = (200, "application/json", b'{"model": "m", "query": {"kind": "image"}}')
    with pytest.raises(ServiceError, match="without the expected fields"):
        ServiceClient(standin.url).search_image(query_png, k=1)
    standin.override["/api/v1/info"] = (502, "text/plain", b"Bad Gateway")
    with pytest.raises(ServiceError, match="HTTP 502 Bad Gateway to GET /api/v1/info") as error:
        ServiceClient(standin.url).info()
    assert error.value.status == 502


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:7860", True),
        ("http://localhost:7860/", True),
        ("http://[::1]:7860", True),
        ("http://127.3.4.5", True),
        ("https://shapes.example.org", False),
        ("http://192.168.1.5:7860", False),
    ],
)
def test_loopback_urls_are_the_ones_allowed_offline(url, loopback):
    assert client.is_loopback(url) is loopback


@pytest.mark.parametrize("url", ["127.0.0.1:7860", "ftp://host/", "http://", "http://host/?q=1"])
def test_malformed_service_urls_are_refused_with_the_field(url):
    with pytest.raises(ServiceError, match="service URL") as error:
        ServiceClient(url)
    assert error.value.field == "service_url"


def test_multipart_bodies_parse_back_with_the_standard_library():
    body, content_type = client.encode_multipart(
        [("shape_ids", 'a "quoted" id'), ("shape_ids", "b/c")], [("files", "x.glb", b"glTF\0\1", "model/gltf-binary")]
    )
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    parts = list(message.iter_parts())
    assert [part.get_param("name", header="content-disposition") for part in parts] == ["shape_ids"] * 2 + ["files"]
    assert parts[0].get_payload(decode=True) == b'a "quoted" id' and parts[1].get_payload(decode=True) == b"b/c"
    assert parts[2].get_filename() == "x.glb" and parts[2].get_payload(decode=True) == b"glTF\0\1"
