"""The report in a real browser (headless Chromium): it renders without console errors, every image loads, it screenshots.

No browser-driving package is needed: Chromium's own command line does it.

1. ``--screenshot`` of the page as written, with ``--enable-logging=stderr``: Chromium logs every
   console message (a script error, a refused load under the page's Content-Security-Policy, a
   missing resource) as a ``CONSOLE`` line, and a page with no script must log none.
2. ``--dump-dom`` of a copy of the page with a small probe script injected (its policy relaxed for
   that one inline script): on load the probe writes the console errors, window errors, refused
   loads and every image's ``naturalWidth`` into a ``<pre>`` element, which the dumped DOM holds.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from spineage.reporting.html import write_report
from tests.reporting.conftest import FIGURE_SIZES

CHROMIUM = next((found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))), None)

POLICY = "default-src 'none';"
PROBE_ID = "report-probe"
PROBE = """<script>
(function () {
  var problems = [];
  var original = console.error;
  console.error = function () { problems.push("console.error: " + Array.prototype.join.call(arguments, " ")); original.apply(console, arguments); };
  window.addEventListener("error", function (e) {
    problems.push("error: " + (e.message || (e.target && (e.target.currentSrc || e.target.src || e.target.href)) || "unknown"));
  }, true);
  document.addEventListener("securitypolicyviolation", function (e) { problems.push("refused: " + e.violatedDirective + " " + e.blockedURI); });
  window.addEventListener("load", function () {
    var images = Array.prototype.map.call(document.images, function (img) {
      return {src: img.getAttribute("src").slice(0, 21), complete: img.complete, naturalWidth: img.naturalWidth,
              naturalHeight: img.naturalHeight, width: Number(img.getAttribute("width"))};
    });
    var out = document.createElement("pre");
    out.id = "PROBE_ID";
    out.textContent = JSON.stringify({problems: problems, images: images});
    document.body.appendChild(out);
  });
})();
</script>
""".replace("PROBE_ID", PROBE_ID)

CONSOLE_LINE = re.compile(r":CONSOLE[:(].*")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (apt-get install chromium) for the browser test"),
]


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_the_report_renders_in_chromium_without_console_errors_and_every_image_loads(full_reports: Path, tmp_path: Path) -> None:
    from PIL import Image

    page = write_report(full_reports, tmp_path / "out" / "report.html", ablations=full_reports.parent / "ablations")

    screenshot = tmp_path / "screenshot.png"
    shot = _chromium(tmp_path / "profile-shot", f"--screenshot={screenshot}", "--window-size=1280,4000", page.as_uri())
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert CONSOLE_LINE.findall(shot.stderr) == []  # no script error, no refused or missing load
    assert screenshot.is_file() and screenshot.stat().st_size > 20_000
    with Image.open(screenshot) as image:
        assert image.format == "PNG" and image.size == (1280, 4000)
        grey = image.convert("L")
        inked = sum(grey.histogram()[:200])  # pixels clearly darker than the white page: text, rules, figures
        assert inked > 0.01 * grey.width * grey.height

    text = page.read_text(encoding="utf-8")
    assert text.count(POLICY) == 1  # the page's policy forbids every script; the probe's copy lets its own run
    probed = tmp_path / "out" / "probed.html"
    probed.write_text(text.replace(POLICY, POLICY + " script-src 'unsafe-inline';").replace("</head>", PROBE + "</head>", 1), encoding="utf-8")
    dump = _chromium(tmp_path / "profile-dom", "--dump-dom", probed.as_uri())
    assert dump.returncode == 0, dump.stderr[-2000:]
    found = re.search(rf'<pre id="{PROBE_ID}">(.*?)</pre>', dump.stdout, re.DOTALL)
    assert found, f"the probe did not report; chromium said: {dump.stderr[-2000:]}"
    report = json.loads(html.unescape(found.group(1)))

    assert report["problems"] == []
    assert CONSOLE_LINE.findall(dump.stderr) == []
    assert len(report["images"]) == len(FIGURE_SIZES)
    for image in report["images"]:
        assert image["src"] == "data:image/png;base64"
        assert image["complete"] and image["naturalWidth"] > 0 and image["naturalHeight"] > 0, image
        assert image["naturalWidth"] == image["width"], image
    assert sorted((i["naturalWidth"], i["naturalHeight"]) for i in report["images"]) == sorted(FIGURE_SIZES.values())


def test_the_probe_would_catch_a_broken_image_and_a_refused_load(tmp_path: Path) -> None:
    """The browser check is only as good as its probe: a page with a broken image and an outside load must fail it."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{POLICY} script-src 'unsafe-inline'; img-src data:\">{PROBE}</head>"
        "<body><img src='data:image/png;base64,bm90IGEgcG5n' width='5'><img src='https://example.invalid/x.png'></body></html>"
    )
    dump = _chromium(tmp_path / "profile", "--dump-dom", page.as_uri())
    report = json.loads(html.unescape(re.search(rf'<pre id="{PROBE_ID}">(.*?)</pre>', dump.stdout, re.DOTALL).group(1)))

    assert [image["naturalWidth"] for image in report["images"]] == [0, 0]
    assert any(problem.startswith("refused: img-src https://example.invalid") for problem in report["problems"])
    assert CONSOLE_LINE.findall(dump.stderr)
