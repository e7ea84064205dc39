"""Browser tests of the settings console (/console/): headless Debian chromium driven by
playwright's sync API through ``executable_path`` (``playwright install`` is never run).

Why a thread: while a sync-API playwright is alive it marks its own asyncio loop as the
running loop of the thread that started it (playwright/_impl/_greenlets.py). In the pytest
main thread that would break every later pytest-asyncio test of this xdist worker (the
session loop "cannot be run from a running event loop") and ``asyncio.run`` in
``GatewayProcess.cli``. So playwright, the browser and every call on them live in one
thread of their own (``BrowserThread``), started once per worker (session scope): fixtures
ask it to make contexts and pages, and ``pytest_pyfunc_call`` below runs the body of every
test that uses the browser in that thread. Browser tests are plain sync functions; inside
one, use the admin API (httpx) rather than ``gw.cli`` (``asyncio.run`` refuses to run in that
thread). Fixture code (main thread) may use ``gw.cli``.

Fixtures:
- ``browser`` (session): the ``BrowserThread``; skips the test when chromium is missing
  (``MODELPORT_CHROMIUM`` or /usr/bin/chromium).
- ``tab`` (function): a fresh context (1280x900) and page; every request, console message,
  page error and navigation of the context is recorded (``Tab``). ``page`` is ``tab.page``.
- ``new_tab`` (function): makes more tabs, e.g. ``new_tab(viewport=MOBILE, color_scheme="dark")``;
  all are closed after the test.
- ``artifacts`` (session): where screenshots go: ``MODELPORT_TEST_ARTIFACTS`` or
  ``<pytest basetemp>/screenshots`` (never inside the repository). A failing test gets a
  ``FAILED`` screenshot of each of its tabs; the path is in the failure report and the summary.
- ``console_gateway`` (module): a gateway of the module's own (2 workers), started and stopped
  by the module; ``admin_token()`` reads its admin token.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import inspect
import ipaddress
import os
import queue
import re
import shutil
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import pytest

from tests.e2e.harness import GatewayProcess

T = TypeVar("T")

CHROMIUM = os.environ.get("MODELPORT_CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-default-apps"]
DESKTOP = {"width": 1280, "height": 900}
MOBILE = {"width": 390, "height": 844}
# Bounded waits: one playwright call (locators, expect), one navigation, one whole test.
ACTION_TIMEOUT_MS = 10_000
NAVIGATION_TIMEOUT_MS = 15_000
TEST_TIMEOUT_S = 300.0
SETUP_TIMEOUT_S = 60.0

LOCAL_SCHEMES = frozenset({"data", "blob", "about"})


def is_loopback_url(url: str) -> bool:
    """True for a URL that stays on this machine: http(s)/ws(s) to 127.0.0.1 (or another
    loopback address), or a data:/blob:/about: URL, which is no request to anywhere."""
    parts = urlsplit(url)
    if parts.scheme in LOCAL_SCHEMES:
        return True
    if parts.scheme not in {"http", "https", "ws", "wss"} or not parts.hostname:
        return False
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


# -- the browser thread ------------------------------------------------------------------


class BrowserThread:
    """Playwright (sync API) and one headless chromium, owned by a thread of their own;
    ``call(fn)`` runs ``fn()`` there and returns its result (or raises its exception)."""

    def __init__(self, executable: str, home: Path) -> None:
        self.executable = executable
        self.home = home  # HOME/XDG dirs of the browser: nothing of the user's is read or written
        self.browser: Any = None
        self._jobs: queue.Queue[tuple[Callable[[], Any], concurrent.futures.Future[Any]] | None] = queue.Queue()
        self._started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._main, name="playwright", daemon=True)

    def start(self, timeout: float = SETUP_TIMEOUT_S) -> BrowserThread:
        self._thread.start()
        self._started.result(timeout=timeout)
        return self

    def _main(self) -> None:
        from playwright.sync_api import sync_playwright

        try:
            playwright = sync_playwright().start()
        except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
            self._started.set_exception(exc)
            return
        try:
            env: dict[str, str | float | bool] = {**os.environ, "HOME": str(self.home), "XDG_CONFIG_HOME": str(self.home / "config"),
                   "XDG_CACHE_HOME": str(self.home / "cache")}
            # launch() gives chromium a fresh throwaway --user-data-dir (playwright refuses one
            # passed in args; launch_persistent_context would allow only one context).
            self.browser = playwright.chromium.launch(executable_path=self.executable, headless=True,
                                                      args=CHROMIUM_ARGS, env=env, timeout=30_000)
        except BaseException as exc:  # noqa: BLE001
            playwright.stop()
            self._started.set_exception(exc)
            return
        self._started.set_result(None)
        try:
            while (job := self._jobs.get()) is not None:
                fn, future = job
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn())
                    except BaseException as exc:  # noqa: BLE001 - re-raised by call()
                        future.set_exception(exc)
        finally:
            with contextlib.suppress(Exception):
                self.browser.close()
            playwright.stop()

    def call(self, fn: Callable[[], T], timeout: float = SETUP_TIMEOUT_S) -> T:
        if threading.current_thread() is self._thread:
            return fn()
        if not self._thread.is_alive():
            raise RuntimeError("the playwright thread is not running")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((fn, future))
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise AssertionError(f"the browser did not finish within {timeout:.0f}s") from None

    def stop(self, timeout: float = 30.0) -> None:
        self._jobs.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            # Still busy with a job that overran; the daemon thread ends with the process,
            # and the playwright driver takes chromium down when its pipe closes.
            print(f"warning: the playwright thread did not stop within {timeout:.0f}s")


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserThread]:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no chromium at {CHROMIUM}: install Debian's `chromium` (.ci/run does) or set MODELPORT_CHROMIUM")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the `playwright` Python package is not installed (pip install -e '.[test]')")
    thread = BrowserThread(CHROMIUM, tmp_path_factory.mktemp("chromium-home")).start()
    try:
        yield thread
    finally:
        thread.stop()


def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run the body of a test that uses the browser in the browser's thread (see above)."""
    if "browser" not in pyfuncitem.fixturenames:
        return None
    if pyfuncitem.get_closest_marker("asyncio") or inspect.iscoroutinefunction(pyfuncitem.obj):
        return None  # pytest-asyncio's (main thread); such a test reaches the browser via browser.call
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    browser = cast(BrowserThread, pyfuncitem.funcargs["browser"])
    browser.call(lambda: pyfuncitem.obj(**args), timeout=TEST_TIMEOUT_S)
    return True


# -- artifacts (screenshots) -------------------------------------------------------------


def _artifacts_dir(config: pytest.Config) -> Path:
    if os.environ.get("MODELPORT_TEST_ARTIFACTS"):
        return Path(os.environ["MODELPORT_TEST_ARTIFACTS"]).resolve()
    base = config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's basetemp, shared by the workers (popen-gwN/..)
    return base / "screenshots"


@pytest.fixture(scope="session")
def artifacts(request: pytest.FixtureRequest) -> Path:
    path = _artifacts_dir(request.config)
    path.mkdir(parents=True, exist_ok=True)
    print(f"browser screenshots: {path}")
    return path


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    with contextlib.suppress(Exception):
        path = _artifacts_dir(config)
        if path.is_dir() and any(path.glob("*.png")):
            terminalreporter.write_line(f"browser screenshots: {path}")


_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


# -- tabs: a recorded context and page --------------------------------------------------


@dataclass
class Tab:
    """A browser context with one page, and what happened in it."""

    context: Any
    page: Any
    artifacts: Path
    prefix: str
    requests: list[str] = field(default_factory=list)          # every request URL, in order
    console: list[tuple[str, str]] = field(default_factory=list)  # (type, text)
    page_errors: list[str] = field(default_factory=list)       # uncaught exceptions
    navigations: list[str] = field(default_factory=list)       # every URL a frame showed
    shots: list[Path] = field(default_factory=list)

    def left_loopback(self) -> list[str]:
        return [url for url in self.requests if not is_loopback_url(url)]

    def csp_violations(self) -> list[str]:
        return [text for kind, text in self.console
                if kind == "error" and "content security policy" in text.lower()]

    def shot(self, name: str, *, full_page: bool = True) -> Path:
        path = self.artifacts / f"{self.prefix}{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
        self.page.screenshot(path=str(path), full_page=full_page, animations="disabled")
        self.shots.append(path)
        return path

    def storage(self) -> str:
        """localStorage and sessionStorage of the page's origin, as text."""
        return str(self.page.evaluate(
            "() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])"))


def _open_tab(browser: Any, artifacts: Path, prefix: str, options: dict[str, Any]) -> Tab:
    context = browser.new_context(**{"viewport": DESKTOP, **options})
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
    page = context.new_page()
    tab = Tab(context, page, artifacts, prefix)
    context.on("request", lambda r: tab.requests.append(r.url))
    context.on("console", lambda m: tab.console.append((m.type, m.text)))

    def watch(p: Any) -> None:
        p.on("pageerror", lambda e: tab.page_errors.append(str(e)))
        p.on("framenavigated", lambda f: tab.navigations.append(f.url))
    watch(page)
    context.on("page", watch)
    # Nothing may leave the machine: such a request is recorded (above) and aborted here.
    context.route(lambda url: not is_loopback_url(url), lambda route: route.abort("blockedbyclient"))
    return tab


@pytest.fixture
def new_tab(browser: BrowserThread, artifacts: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Tab]]:
    tabs: list[Tab] = []
    test = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)

    def make(**options: Any) -> Tab:
        prefix = f"{test}--" if not tabs else f"{test}--tab{len(tabs) + 1}--"
        tab = browser.call(lambda: _open_tab(browser.browser, artifacts, prefix, options))
        tabs.append(tab)
        return tab

    yield make
    failed = any(r.failed for r in request.node.stash.get(_REPORTS, {}).values())
    for tab in tabs:
        if failed:
            with contextlib.suppress(Exception):
                path = browser.call(functools.partial(tab.shot, "FAILED"))
                request.node.add_report_section("teardown", "screenshot", str(path))
        with contextlib.suppress(Exception):
            browser.call(tab.context.close)
    if tabs and any(t.shots for t in tabs):
        print(f"screenshots of {request.node.name}: {artifacts}")


@pytest.fixture
def tab(new_tab: Callable[..., Tab]) -> Tab:
    return new_tab()


@pytest.fixture
def page(tab: Tab) -> Any:
    return tab.page


# -- a gateway of the module's own -------------------------------------------------------


@pytest.fixture(scope="module")
def console_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(tmp_path_factory.mktemp("console-gateway"), workers=2)
    try:
        with gw.running():
            yield gw
    finally:
        # The data directory holds the admin token: not left behind in the basetemp.
        shutil.rmtree(gw.data_dir, ignore_errors=True)
