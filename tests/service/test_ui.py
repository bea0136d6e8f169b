"""The Gradio page: its named endpoints through gradio_client, and the page itself in headless Chromium."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.service.fixtures import ServiceProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update"]


@pytest.fixture(scope="module")
def page_server(sample_library):
    args = ["--model", str(sample_library.model_dir), "--index", str(sample_library.index_dir)]
    with ServiceProcess(*args, "--example", str(sample_library.query_image)) as process:
        yield process


def test_gradio_client_gets_the_gallery_and_a_model3d_file(page_server, sample_library):
    from gradio_client import Client, handle_file

    client = Client(page_server.url, verbose=False, download_files=True)
    gallery, summary = client.predict(
        handle_file(str(sample_library.query_image)), "index", 5, api_name="/search_image"
    )
    assert len(gallery) == 5 and sample_library.query_id in gallery[0]["caption"]
    assert Path(gallery[0]["image"]).stat().st_size > 0
    assert "5 shapes" in summary and "ms" in summary
    viewer, download = client.predict(sample_library.query_id, "index", api_name="/show_shape")
    assert Path(viewer).suffix == ".glb" and Path(viewer).read_bytes()[:4] == b"glTF"
    assert Path(download).read_bytes() == Path(viewer).read_bytes()
    with pytest.raises(Exception, match="not in library"):
        client.predict("no/such-shape", "index", api_name="/show_shape")


def test_a_bad_upload_is_reported_in_the_page(page_server, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(page_server.url, verbose=False)
    broken = tmp_path / "broken.obj"
    broken.write_text("this is not a mesh")
    with pytest.raises(Exception, match=r"shape: broken\.obj: holds no faces"):
        client.predict(handle_file(str(broken)), "index", 5, api_name="/search_shape")


@pytest.mark.slow
def test_the_page_in_chromium_searches_shows_the_gallery_and_the_3d_viewer(page_server, sample_library, tmp_path):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.is_file(), "Debian's chromium is missing: `make test` installs it with apt"
    screenshots = Path(os.environ.get("HF_CMAH_SCREENSHOT_DIR", tmp_path))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1500})
            page.goto(page_server.url, timeout=60_000)
            page.locator("input[type=file]").first.set_input_files(str(sample_library.query_image))
            page.locator("#search-image").click()
            page.locator("#results img").first.wait_for(timeout=60_000)
            assert page.locator("#results img").count() == len(sample_library.shape_ids)  # k=10 caps at the 9 shapes
            assert sample_library.query_id in page.locator("#results").inner_text()
            assert "ms" in page.locator("#search-summary").inner_text()
            page.locator("#results img").first.click()
            page.locator("#viewer canvas").wait_for(timeout=60_000)
            page.wait_for_timeout(1500)  # let the viewer draw the mesh
            page.screenshot(path=str(screenshots / "service-page.png"), full_page=True)
        finally:
            browser.close()
    assert (screenshots / "service-page.png").stat().st_size > 10_000
