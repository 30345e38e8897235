#!/usr/bin/env python3
"""Write vendor/dvc_plots.html: the page `dvc plots show` fills, with Vega, Vega-Lite and Vega-Embed inline.

DVC's default page loads the three libraries from cdn.jsdelivr.net, so without a network it stays blank.
This page carries their minified browser builds in <script> tags instead; .dvc/config points DVC at it
(`plots.html_template`, a path relative to .dvc/). The versions are pinned below; the script fetches the
packages with `npm pack` (the npm registry, or whatever registry npm is configured with) into a temporary
folder, takes `build/<name>.min.js` and the LICENSE files from the tarballs, and writes the same bytes
on every run.

    python scripts/vendor_plots_template.py            # write vendor/dvc_plots.html and vendor/LICENSE-*
    python scripts/vendor_plots_template.py --check    # rebuild in memory and verify the files

dvc_render (1.0.x) fills the page with str.replace on three placeholders, {plot_divs} (required),
{scripts} and {refresh_tag}, not with str.format: braces in the inlined code need no escaping. The page
leaves out {scripts}, where DVC would put its <script src="https://cdn..."> tags; the script refuses
library code that contains one of the placeholders or would end the <script> element early.

Standard library only (Python 3.11); needs `npm` on PATH.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

# The majors DVC's own page loads (dvc_render.vega.VegaRenderer.SCRIPTS: vega@5, vega-lite@5, vega-embed@6)
# and that the specs it writes declare ("$schema": ".../vega-lite/v5.json"); the newest release of each.
VEGA = "5.33.1"
VEGA_LITE = "5.23.0"
VEGA_EMBED = "6.29.0"
# The vega package ships no LICENSE file; vega-view, a package of the same repository (vega/vega) that
# vega.min.js bundles and that vega@VEGA depends on, carries the repository's licence.
VEGA_LICENSE_FROM = ("vega-view", "5.16.1")

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "vendor"
TEMPLATE = "dvc_plots.html"
# (package, version, file in the tarball, what the library defines on window)
LIBRARIES = [
    ("vega", VEGA, "package/build/vega.min.js", "vega"),
    ("vega-lite", VEGA_LITE, "package/build/vega-lite.min.js", "vegaLite"),
    ("vega-embed", VEGA_EMBED, "package/build/vega-embed.min.js", "vegaEmbed"),
]
LICENSES = {
    "LICENSE-vega": VEGA_LICENSE_FROM,
    "LICENSE-vega-lite": ("vega-lite", VEGA_LITE),
    "LICENSE-vega-embed": ("vega-embed", VEGA_EMBED),
}
# What dvc_render replaces anywhere in the page (dvc_render.html.HTML.embed).
DVC_PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")
SOURCE_MAP = re.compile(r"\n?//# sourceMappingURL=[^\n]*\n?\Z")
ENDS_SCRIPT = re.compile(r"</script|<!--|<script", re.IGNORECASE)

STYLE = """\
    :root { color-scheme: light; }
    body {
      margin: 0;
      padding: 24px 32px 40px;
      background: #f5f6f8;
      color: #1f2328;
      font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
    }
    header h1 { margin: 0 0 4px; font-size: 20px; font-weight: 600; }
    header p, footer { margin: 0; color: #656d76; font-size: 12px; }
    main {
      display: flex;
      flex-wrap: wrap;
      align-items: flex-start;
      gap: 20px;
      margin: 20px 0;
    }
    main > div {
      box-sizing: border-box;
      max-width: 100%;
      overflow-x: auto;
      padding: 16px;
      background: #fff;
      border: 1px solid #d0d7de;
      border-radius: 8px;
      box-shadow: 0 1px 2px rgba(31, 35, 40, 0.06);
    }
    /* DVC writes `var spec = {};` for a plot with no data (a generation-only plot on a label task): Vega
       draws nothing there, so leave out its empty card. */
    main > div:has(.marks[width="0"]) { display: none; }
    main img { max-width: 100%; }
    table { border-spacing: 15px; }
"""


def npm_pack(specs: list[str], folder: Path) -> dict[str, Path]:
    """`npm pack` each `name@version` into `folder`; {spec: tarball}."""
    subprocess.run(
        ["npm", "pack", "--silent", "--no-audit", "--no-fund", *specs],
        cwd=folder,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    tarballs = {}
    for spec in specs:
        name, version = spec.rsplit("@", 1)
        tarball = folder / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
        if not tarball.is_file():
            raise SystemExit(f"npm pack {spec} wrote no {tarball.name}")
        tarballs[spec] = tarball
    return tarballs


def member(tarball: Path, name: str) -> bytes:
    with tarfile.open(tarball, "r:gz") as archive:
        extracted = archive.extractfile(name)
        if extracted is None:
            raise SystemExit(f"{tarball.name} holds no file {name}")
        return extracted.read()


def script_body(package: str, code: bytes) -> str:
    """The library's code as it goes inside <script>: without the source-map comment (no map is shipped)."""
    text = SOURCE_MAP.sub("", code.decode("utf-8")).rstrip("\n")
    for placeholder in DVC_PLACEHOLDERS:
        if placeholder in text:
            raise SystemExit(f"{package}: the code contains {placeholder}, which DVC would replace")
    found = ENDS_SCRIPT.search(text)
    if found:
        raise SystemExit(f"{package}: the code contains {found.group(0)!r}, which breaks an inline <script>")
    return text


def page(scripts: list[tuple[str, str, str]]) -> str:
    """The HTML template; `scripts`: (package, version, code) in load order."""
    versions = ", ".join(f"{package} {version}" for package, version, _ in scripts)
    parts = [
        "<!DOCTYPE html>\n",
        '<html lang="en">\n',
        "<head>\n",
        '  <meta charset="utf-8">\n',
        '  <meta name="viewport" content="width=device-width, initial-scale=1">\n',
        "  {refresh_tag}\n",
        "  <title>DVC plots</title>\n",
        "  <!-- Written by scripts/vendor_plots_template.py; see vendor/README.md. Nothing on this page comes\n",
        "       from the network: the libraries are inline (BSD-3-Clause, vendor/LICENSE-*). -->\n",
        "  <style>\n",
        STYLE,
        "  </style>\n",
    ]
    for package, version, code in scripts:
        parts += [
            f"  <!-- {package} {version}: build/{package}.min.js, BSD-3-Clause (vendor/LICENSE-{package}) -->\n",
            "  <script>\n",
            code,
            "\n  </script>\n",
        ]
    parts += [
        "</head>\n",
        "<body>\n",
        "  <header>\n",
        "    <h1>DVC plots</h1>\n",
        "    <p>Drawn in this page with " + versions + ", which it carries inline: no network needed.</p>\n",
        "  </header>\n",
        "  <main>\n",
        "{plot_divs}\n",
        "  </main>\n",
        "  <footer>Vega, Vega-Lite and Vega-Embed: Copyright (c) University of Washington Interactive Data Lab,",
        " BSD-3-Clause.</footer>\n",
        "</body>\n",
        "</html>\n",
    ]
    return "".join(parts)


def build() -> dict[str, bytes]:
    """{file name under vendor/: bytes}."""
    specs = [f"{package}@{version}" for package, version, _, _ in LIBRARIES]
    specs.append("@".join(VEGA_LICENSE_FROM))
    with tempfile.TemporaryDirectory(prefix="vendor-plots-") as folder:
        tarballs = npm_pack(specs, Path(folder))
        scripts = []
        for package, version, path, _ in LIBRARIES:
            code = member(tarballs[f"{package}@{version}"], path)
            scripts.append((package, version, script_body(package, code)))
        files = {TEMPLATE: page(scripts).encode("utf-8")}
        for name, (package, version) in LICENSES.items():
            files[name] = member(tarballs[f"{package}@{version}"], "package/LICENSE")
    if files[TEMPLATE].count(b"{plot_divs}") != 1:
        raise SystemExit("the page must hold {plot_divs} exactly once")
    return files


def write(files: dict[str, bytes]) -> None:
    VENDOR.mkdir(exist_ok=True)
    for name, content in files.items():
        target = VENDOR / name
        with tempfile.NamedTemporaryFile(dir=VENDOR, prefix=f".{name}.", delete=False) as temporary:
            temporary.write(content)
        os.replace(temporary.name, target)
        target.chmod(0o644)
        print(f"wrote vendor/{name}: {len(content)} bytes, sha256 {hashlib.sha256(content).hexdigest()}")


def check(files: dict[str, bytes]) -> int:
    stale = [
        name
        for name, content in files.items()
        if not (VENDOR / name).is_file() or (VENDOR / name).read_bytes() != content
    ]
    for name in stale:
        print(f"vendor/{name} differs from what the pinned versions give: run scripts/vendor_plots_template.py")
    if not stale:
        print(f"vendor/ matches vega {VEGA}, vega-lite {VEGA_LITE}, vega-embed {VEGA_EMBED}")
    return 1 if stale else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="verify the written files instead of writing them")
    args = parser.parse_args()
    files = build()
    if args.check:
        return check(files)
    write(files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
