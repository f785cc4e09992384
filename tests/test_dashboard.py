"""`--sink web` in a real headless browser (Debian's chromium, driven by Selenium through chromedriver): the page
loads, the video and the charts update at the measured rate, and a threshold chosen in the page changes the next
frames, measured on the pixels. Also the server on its own: /stats, /control, the token and the client bound.

Needs Debian's chromium and chromium-driver (`.ci/run` installs them); the browser test skips with that reason
elsewhere. Set CAMSTREAM_DASHBOARD_PNG=PATH to keep the page's screenshot (the README's picture is made so).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from .conftest import shared_file

DEADLINE_S = 120  # model load and tracing on a busy CI machine come before the dashboard answers


@pytest.fixture(scope="module")
def minute_clip(tmp_path_factory) -> Path:
    """The shared dashcam clip at 320×180, looped to a minute at 15 fps: a run played at source speed (--live)
    outlasts the browser's checks."""
    frames = []
    with av.open(str(shared_file("video", "dashcam_solidWhiteRight.mp4"))) as source:
        for frame in source.decode(video=0):
            frames.append(frame.to_ndarray(width=320, height=180, format="rgb24"))
    path = tmp_path_factory.mktemp("clip") / "minute.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=15, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        for index in range(900):
            rgb = frames[index % len(frames)]
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode(None))
    return path


class Run:
    """`camstream run --sink web` in a subprocess, its dashboard's address read from its first line."""

    def __init__(self, clip: Path, out: Path, *extra: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "camstream", "run", "--source", str(clip), "--sink",
                                         "web", "--port", "0", "--live", "--out", str(out), "--quiet", *extra],
                                        stderr=subprocess.PIPE, text=True)
        self.url = self.link = ""
        began = time.monotonic()
        for line in self.process.stderr:
            if "dashboard at " in line:
                self.link = line.split("dashboard at ")[1].strip()  # with ?token= when there is one
                self.url = self.link.split("?")[0]
                break
            assert time.monotonic() - began < DEADLINE_S, "no dashboard address"
        assert self.url, f"the run ended before serving (exit {self.process.wait()})"

    def get(self, path: str, data: dict | None = None, headers: dict | None = None) -> tuple[int, bytes]:
        body = None if data is None else json.dumps(data).encode()
        request = urllib.request.Request(self.url + path, body, headers or {}, method="POST" if body else "GET")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=60)
        self.process.stderr.close()
        return code


def test_stats_controls_and_the_token_on_the_server(minute_clip, tmp_path):
    run = Run(minute_clip, tmp_path / "out", "--source", minute_clip, "--token", "s3cret")  # two streams, one page
    try:
        assert run.get("stats")[0] == 403 and run.get("stream/0.mjpg")[0] == 403
        assert run.link == run.url + "?token=s3cret"  # the start line's link opens the page (it was a 403)
        with urllib.request.urlopen(run.link, timeout=DEADLINE_S) as page:
            assert page.status == 200 and b"<html" in page.read(4096).lower()
        status, body = run.get("stats?token=s3cret")
        stats = json.loads(body)
        assert status == 200 and stats["running"] and len(stats["streams"]) == 2
        assert all(stream["source"].endswith("minute.mp4") for stream in stats["streams"])
        with urllib.request.urlopen(run.url + "stream/1.mjpg?token=s3cret", timeout=DEADLINE_S) as video:
            assert video.read(64).startswith(b"--frame\r\nContent-Type: image/jpeg")  # the second stream's video
        assert run.get("frame/1.jpg?token=s3cret")[0] == 200 and run.get("frame/2.jpg?token=s3cret")[0] == 404
        assert {"gradcam", "recipro"} <= set(stats["controls"]["methods"])
        status, body = run.get("control", {"threshold": "10", "method": "recipro", "hud": "off", "smooth": 0.5},
                               {"Authorization": "Bearer s3cret"})
        state = json.loads(body)
        assert status == 200 and (state["threshold"], state["method"], state["hud"], state["smooth"]) == (
            "10%", "recipro", "off", 0.5)
        status, body = run.get("control?token=s3cret", {"alpha": 2, "hud": "top"})
        assert status == 400 and "alpha must be in [0, 1]" in json.loads(body)["error"]
        assert json.loads(run.get("stats?token=s3cret")[1])["controls"]["hud"] == "off"  # nothing half-applied
        assert run.get("control?token=s3cret", {"class_id": 5000})[0] == 400  # the model has 1,000 classes
        # one stream set on its own: the other keeps its settings; the method is the one model's, for all
        status, body = run.get("control?token=s3cret", {"stream": 1, "threshold": "5", "alpha": 0.25})
        assert status == 200 and json.loads(body)["stream"] == 1
        streams = json.loads(run.get("stats?token=s3cret")[1])["streams"]
        assert (streams[1]["controls"]["threshold"], streams[1]["controls"]["alpha"]) == ("5%", 0.25)
        assert streams[0]["controls"]["threshold"] == "10%" and streams[0]["controls"]["alpha"] != 0.25
        status, body = run.get("control?token=s3cret", {"stream": 1, "method": "gradcam"})
        assert status == 400 and "shared by every stream" in json.loads(body)["error"]
        assert run.get("control?token=s3cret", {"stream": 2, "alpha": 0.5})[0] == 400  # no third stream
        status, body = run.get("control?token=s3cret", {"threshold": "faithful"})  # it was taken, and drew all
        assert status == 400 and "set when the run starts" in json.loads(body)["error"]
    finally:
        assert run.stop() == 130
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["interrupted"] and [s["sinks"][0]["type"] for s in report["streams"]] == ["web", "web"]


def test_keep_serving_keeps_the_last_state_up_after_a_file_ends_until_ctrl_c(tmp_path, demo_clip):
    """A 10 s clip gave a page that died with the run; --keep-serving holds its last frame and figures."""
    process = subprocess.Popen([sys.executable, "-m", "camstream", "run", "--source", str(demo_clip), "--sink", "web",
                                "--port", "0", "--max-frames", "12", "--keep-serving", "--out", str(tmp_path), "-q"],
                               stderr=subprocess.PIPE, text=True)
    try:
        link = ""
        for line in process.stderr:
            if "stays up at " in line:
                link = line.split("stays up at ")[1].split(" ")[0]
                break
        assert link and process.poll() is None, "the run ended without keeping its dashboard up"
        assert json.loads((tmp_path / "report.json").read_text())["total"]["frames_out"] == 12  # the run is done
        with urllib.request.urlopen(link + "stats", timeout=DEADLINE_S) as answer:
            stats = json.loads(answer.read())
        assert not stats["running"] and stats["streams"][0]["frames_out"] == 12
        with urllib.request.urlopen(link + "frame/0.jpg", timeout=DEADLINE_S) as frame:
            assert frame.read(3) == b"\xff\xd8\xff"  # the last frame, still served
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
        process.stderr.close()
    assert code == 0  # the run itself ended normally; Ctrl-C only closed the page


def _browser(size: tuple[int, int] = (1280, 860)):
    missing = [tool for tool in ("chromium", "chromedriver") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian's chromium and chromium-driver; .ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={size[0]},{size[1]}"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def _saturated_share(png: bytes) -> float:
    """The share of pixels whose HSV saturation is above 60 %: the heatmap's colours, not the road's greys."""
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    return float((cv2.cvtColor(image, cv2.COLOR_BGR2HSV)[..., 1] > 153).mean())


def test_the_dashboard_in_a_real_browser(minute_clip, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser = _browser()
    run = Run(minute_clip, tmp_path / "out")
    try:
        browser.get(run.url)
        wait = WebDriverWait(browser, 30, poll_frequency=0.1)
        wait.until(lambda b: b.find_element(By.ID, "status").text == "live", "the page never went live")
        video = browser.find_element(By.ID, "video-0")
        wait.until(lambda b: video.size["height"] > 50, "no video shown")
        first = video.screenshot_as_png
        wait.until(lambda b: video.screenshot_as_png != first, "the video does not move")  # the video moves
        chart = "return document.getElementById('chart-fps-0').toDataURL()"
        drawn = browser.execute_script(chart)
        wait.until(lambda b: b.execute_script(chart) != drawn, "the chart does not move")

        # the update rate, measured in the page: figures received per second over at least 4 s
        start_count, start_time = browser.execute_script("return window.camstreamUpdates"), time.monotonic()
        wait.until(lambda b: b.execute_script("return window.camstreamUpdates") >= start_count + 8,
                   "fewer than 8 updates in 30 s")
        rate = (browser.execute_script("return window.camstreamUpdates") - start_count) / (time.monotonic()
                                                                                             - start_time)
        assert 1.0 <= rate <= 4.0, rate  # pushed every 0.5 s
        frames = browser.find_element(By.ID, "frames-0").text
        assert frames.endswith("/ 900") and int(frames.split()[0]) > 0

        # a threshold chosen in the page changes the next frames: at full opacity, all of the map is colour
        browser.execute_script("const a = document.getElementById('control-alpha'); a.value = 1;"
                               "a.dispatchEvent(new Event('change'));")
        Select(browser.find_element(By.ID, "control-threshold")).select_by_value("1")
        wait.until(lambda b: _saturated_share(video.screenshot_as_png) < 0.3, "top 1 % still colours much")
        sparse = _saturated_share(video.screenshot_as_png)
        Select(browser.find_element(By.ID, "control-threshold")).select_by_value("none")
        wait.until(lambda b: _saturated_share(video.screenshot_as_png) > 0.8, "'none' does not colour all")
        assert browser.find_element(By.ID, "message").text == ""
        Select(browser.find_element(By.ID, "control-threshold")).select_by_value("dynamic")
        assert browser.find_element(By.ID, "value-alpha").text == "1.00"  # the value beside its slider
        # the colour bar, with the newest frame's threshold marked on it
        marked = "return document.getElementById('colorbar').dataset.threshold"
        wait.until(lambda b: b.execute_script(marked) not in (None, ""), "no threshold marked on the colour bar")
        assert 0.0 <= float(browser.execute_script(marked)) <= 1.0
        # a class chosen by name: the inference explains it, the HUD and the class strip name it
        class_input = browser.find_element(By.ID, "control-class")
        class_input.clear()
        class_input.send_keys("balloon")
        browser.execute_script("arguments[0].dispatchEvent(new Event('change'));", class_input)
        wait.until(lambda b: json.loads(run.get("stats")[1])["controls"]["class_id"] == 417, "balloon not chosen")
        wait.until(lambda b: (json.loads(run.get("stats")[1])["streams"][0]["classes"] or [{}])[-1].get("label")
                   == "balloon", "the frames are not explained for the chosen class")
        # pause holds the frame counter; step lets one frame through; resume goes on
        browser.find_element(By.ID, "pause").click()
        wait.until(lambda b: json.loads(run.get("stats")[1])["controls"]["paused"], "pause not taken")
        held = json.loads(run.get("stats")[1])["streams"][0]["frames_out"]
        seen = browser.execute_script("return window.camstreamUpdates")
        wait.until(lambda b: b.execute_script("return window.camstreamUpdates") >= seen + 3, "the page stopped")
        assert json.loads(run.get("stats")[1])["streams"][0]["frames_out"] <= held + 1  # at most one in flight
        held = json.loads(run.get("stats")[1])["streams"][0]["frames_out"]
        browser.find_element(By.ID, "step").click()
        wait.until(lambda b: json.loads(run.get("stats")[1])["streams"][0]["frames_out"] == held + 1, "no step")
        # the snapshot: the overlay and the raw map as PNGs, the frame's facts as JSON
        status, overlay_png = run.get("snapshot/0.png")
        assert status == 200 and overlay_png.startswith(b"\x89PNG")
        status, map_png = run.get("snapshot/0/map.png")
        assert status == 200 and map_png.startswith(b"\x89PNG")
        facts = json.loads(run.get("snapshot/0.json")[1])
        assert facts["class_id"] == 417 and facts["label"] == "balloon" and facts["seq"] >= 0
        assert facts["settings"]["paused"] is True
        # the frame before the overlay, beside it: a whole picture, and not the overlaid one
        browser.find_element(By.ID, "show-original").click()
        original = browser.find_element(By.ID, "original-0")
        wait.until(lambda b: b.execute_script("return arguments[0].naturalWidth", original) == 320, "no original")
        status, before = run.get("original/0.jpg")
        assert status == 200 and before.startswith(b"\xff\xd8") and before != run.get("frame/0.jpg")[1]
        assert run.get("original/3.jpg")[0] == 404
        browser.find_element(By.ID, "show-original").click()
        browser.find_element(By.ID, "pause").click()
        wait.until(lambda b: not json.loads(run.get("stats")[1])["controls"]["paused"], "resume not taken")
        class_input.clear()
        browser.execute_script("arguments[0].dispatchEvent(new Event('change'));", class_input)
        chips = browser.execute_script("return [...document.querySelectorAll('#classes-0 .chip')]"
                                       ".map((chip) => chip.textContent)")  # redrawn with every update
        assert chips and all(float(chip.rsplit(" ", 1)[1]) <= 1.0 for chip in chips)
        screenshot = os.environ.get("CAMSTREAM_DASHBOARD_PNG") or str(tmp_path / "dashboard.png")
        wait.until(lambda b: _saturated_share(video.screenshot_as_png) < 0.8, "dynamic still colours all")
        browser.save_screenshot(screenshot)
        assert sparse < 0.3 and Path(screenshot).stat().st_size > 10_000
        assert run.stop() == 130
        wait.until(lambda b: b.find_element(By.ID, "status").text == "run ended", "the page missed the end")
    finally:
        browser.quit()
        run.stop()


def test_each_stream_of_a_shared_page_has_its_own_controls_in_a_real_browser(minute_clip, tmp_path):
    """Issue 28: with several streams on one page, the controls set one stream (chosen in the page) or all of them:
    pausing stream 1 holds its frame counter while stream 0 goes on; its class, chosen by name, is explained for
    it alone; the controls shown are the chosen stream's."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser = _browser()
    run = Run(minute_clip, tmp_path / "out", "--source", minute_clip)
    try:
        browser.get(run.url)
        wait = WebDriverWait(browser, 30, poll_frequency=0.1)
        wait.until(lambda b: b.find_element(By.ID, "status").text == "live", "the page never went live")
        stats = lambda: json.loads(run.get("stats")[1])["streams"]  # noqa: E731 - read afresh at each call
        assert browser.find_element(By.ID, "target-label").is_displayed()  # hidden with one stream
        Select(browser.find_element(By.ID, "control-target")).select_by_value("1")
        browser.find_element(By.ID, "pause").click()
        wait.until(lambda b: stats()[1]["controls"]["paused"], "stream 1 not paused")
        assert not stats()[0]["controls"]["paused"]
        held, going = stats()[1]["frames_out"], stats()[0]["frames_out"]
        wait.until(lambda b: stats()[0]["frames_out"] >= going + 10, "stream 0 stopped with stream 1")
        assert stats()[1]["frames_out"] <= held + 1  # at most the one in flight
        assert browser.find_element(By.ID, "pause").text == "resume"  # the chosen stream's state
        class_input = browser.find_element(By.ID, "control-class")
        class_input.clear()
        class_input.send_keys("balloon")
        browser.execute_script("arguments[0].dispatchEvent(new Event('change'));", class_input)
        wait.until(lambda b: stats()[1]["controls"]["class_id"] == 417, "balloon not chosen for stream 1")
        assert stats()[0]["controls"]["class_id"] is None
        browser.find_element(By.ID, "pause").click()
        wait.until(lambda b: (stats()[1]["classes"] or [{}])[-1].get("label") == "balloon",
                   "stream 1 is not explained for its class")
        going = stats()[0]["frames_out"]
        wait.until(lambda b: stats()[0]["frames_out"] >= going + 5, "stream 0 stopped")
        assert stats()[0]["classes"][-1]["label"] != "balloon"  # stream 0 still explains each frame's top-1
        Select(browser.find_element(By.ID, "control-target")).select_by_value("0")
        wait.until(lambda b: b.find_element(By.ID, "control-class").get_attribute("value") == "",
                   "the controls still show stream 1's class")
        Select(browser.find_element(By.ID, "control-target")).select_by_value("")  # every stream at once
        Select(browser.find_element(By.ID, "control-threshold")).select_by_value("20")
        wait.until(lambda b: [s["controls"]["threshold"] for s in stats()] == ["20%", "20%"], "not set on both")
    finally:
        browser.quit()
        assert run.stop() == 130


def test_a_server_error_of_a_vanished_client_is_never_a_traceback_and_one_line_with_verbose(capsys):
    """aiohttp says "Error handling request" with a traceback when a client vanishes mid-response; through
    camstream's logging it is nothing by default and one debug line with -v."""
    import logging

    from camstream.progress import configure

    def vanish() -> None:
        try:
            raise ConnectionResetError("Cannot write to closing transport")
        except ConnectionResetError:
            logging.getLogger("aiohttp.server").exception("Error handling request")

    configure()
    vanish()
    assert capsys.readouterr().err == ""
    configure(verbose=True)
    vanish()
    said = capsys.readouterr().err
    configure()
    assert said == ("camstream: debug: aiohttp.server: Error handling request (ConnectionResetError: Cannot write to "
                    "closing transport)\n")
