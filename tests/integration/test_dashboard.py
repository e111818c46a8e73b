"""The web dashboard (issue 16) in a real headless browser (Debian's chromium and
chromium-driver, driven by Selenium), on a cluster of real processes (control plane with
`--dashboard-listen`, one runc agent):

- without credentials every page is refused (401), the script too;
- with the dashboard token (`?token=` once, then its cookie) the page shows the node and a
  running Deployment with its pods, and follows a rollout live: without reloading, the page
  comes to show revision 2 complete with every replica ready;
- a pod's page streams its log as the container writes it;
- screenshots of both go to the test's output directory (tmp_path).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pilothouse.kinds import Kind
from tests.fixtures.agents import ClusterFactory, deployment, eventually

pytestmark = [pytest.mark.slow, pytest.mark.root]


def _browser():  # type: ignore[no-untyped-def]
    if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
        pytest.skip("chromium and chromium-driver are not installed (deploy/install.sh --test)")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1400"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    return webdriver.Chrome(options=options, service=service)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(url: str) -> int:
    try:
        return int(urllib.request.urlopen(url, timeout=10).status)
    except urllib.error.HTTPError as error:
        return int(error.code)


async def test_the_dashboard_shows_the_cluster_and_follows_a_rollout(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    port = _free_port()
    cluster = await cluster_factory(
        agents=1, runtime="runc", control_plane_flags=("--dashboard-listen", f"127.0.0.1:{port}")
    )
    base = f"http://127.0.0.1:{port}"
    token = (cluster.control_plane.data_dir / "dashboard-token").read_text().strip()
    for path in ("/", "/fragment/overview", "/static/dashboard.js", "/pods/default/x"):
        assert _status(base + path) == 401, f"{path} was served without credentials"
    assert _status(f"{base}/?token=wrong") == 401

    web = deployment(
        "web", namespace="default", replicas=2, script="while true; do echo tick; sleep 0.5; done"
    )
    async with cluster.client() as client:
        await client.apply(web)

        async def ready() -> object:
            d = await client.get(Kind.DEPLOYMENT, "web")
            return d.status.ready_replicas == 2 or d.status.ready_replicas

        await eventually(ready, "the Deployment never had 2 ready replicas", within=60)

    browser = await asyncio.to_thread(_browser)
    try:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        def text() -> str:
            return str(browser.find_element(By.ID, "live").text)

        await asyncio.to_thread(browser.get, f"{base}/?token={token}")
        assert "token=" not in browser.current_url, "the token stayed in the address bar"
        page = text()
        assert "n1" in page and "Ready" in page, page
        assert "default/web" in page and "ready 2/2" in page, page
        browser.execute_script("window.notReloaded = true;")

        web.spec.template.spec.containers[0].env.add(name="REVISION", value="2")
        async with cluster.client() as client:
            await client.apply(web)

        def rolled_out(_: object) -> bool:
            section = browser.find_element(By.ID, "deployment-default-web").text
            rows = [line for line in section.splitlines() if line.startswith("2 web-")]
            return (
                "Complete" in section
                and "ready 2/2" in section
                and bool(rows)
                and rows[0].endswith("2/2")
            )

        await asyncio.to_thread(WebDriverWait(browser, 90, poll_frequency=0.5).until, rolled_out)
        assert browser.execute_script("return window.notReloaded === true;"), "the page reloaded"
        browser.save_screenshot(str(tmp_path / "dashboard.png"))

        pod = browser.find_element(By.CSS_SELECTOR, "#node-n1 tr.pod a").get_attribute("href")
        await asyncio.to_thread(browser.get, pod)

        def ticking(_: object) -> bool:
            return browser.find_element(By.ID, "log").text.count("tick") >= 3

        await asyncio.to_thread(WebDriverWait(browser, 30, poll_frequency=0.5).until, ticking)
        browser.save_screenshot(str(tmp_path / "dashboard-logs.png"))
    finally:
        await asyncio.to_thread(browser.quit)
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    print(f"screenshots: {tmp_path / 'dashboard.png'}, {tmp_path / 'dashboard-logs.png'}")
