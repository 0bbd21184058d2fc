"""Write `.dvc/plots/offline.html`: the `dvc plots show` page with vega, vega-lite and vega-embed inlined.

dvc-render's default page loads these three scripts from a CDN, so plots are blank offline. This
fetches the same versions from the npm registry (`npm pack`, which these machines can reach),
checks their licences, and writes one self-contained template; `.dvc/config` points
`plots.html_template` at it.

    python scripts/offline_plots_template.py
"""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = REPO_ROOT / ".dvc" / "plots" / "offline.html"
PACKAGES = {  # the versions dvc-render's own page asks the CDN for
    "vega": ("5.20.2", "build/vega.min.js"),
    "vega-lite": ("5.2.0", "build/vega-lite.min.js"),
    "vega-embed": ("6.18.2", "build/vega-embed.min.js"),
}
PAGE = """<!DOCTYPE html>
<!-- The page `dvc plots show` fills with plots, with {names} inlined from their npm packages
     (BSD-3-Clause; licences at the end) instead of loaded from a CDN, so plots draw offline.
     Written by scripts/offline_plots_template.py. -->
<html>
<head>
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>unleet plots</title>
{scripts}
    <style>
        body {{ font-family: sans-serif; }}
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
<!--
{licences}
-->
"""


def package_file(name: str, version: str, member: str, workdir: Path) -> tuple[str, str]:
    """The script and the licence text of one npm package."""
    archive = subprocess.run(
        ["npm", "pack", f"{name}@{version}", "--silent"], cwd=workdir, check=True, capture_output=True, text=True
    ).stdout.strip()
    with tarfile.open(workdir / archive) as tar:
        script = tar.extractfile(f"package/{member}").read().decode("utf-8")
        licence = tar.extractfile("package/LICENSE").read().decode("utf-8")
    if "BSD" not in licence and "Redistribution and use" not in licence:
        raise SystemExit(f"{name}@{version}: unexpected licence")
    if "</script" in script or "{plot_divs}" in script or "{refresh_tag}" in script:
        raise SystemExit(f"{name}@{version}: cannot be inlined")
    return script, licence


def main() -> None:
    scripts, copyrights, terms = [], [], {}
    with tempfile.TemporaryDirectory() as workdir:
        for name, (version, member) in PACKAGES.items():
            script, licence = package_file(name, version, member, Path(workdir))
            scripts.append(f'    <script data-package="{name}@{version}">{script}</script>')
            copyright_line, body = licence.strip().split("\n", 1)
            copyrights.append(f"{name}@{version}: {copyright_line}")
            terms.setdefault(body.strip(), []).append(name)
    licences = "\n".join(copyrights) + "".join(f"\n\nFor {', '.join(names)}:\n{body}" for body, names in terms.items())
    names = ", ".join(f"{name} {version}" for name, (version, _) in PACKAGES.items())
    page = PAGE.format(names=names, scripts="\n".join(scripts), licences=licences)
    TEMPLATE.parent.mkdir(parents=True, exist_ok=True)
    TEMPLATE.write_text(page, encoding="utf-8")
    print(f"wrote {TEMPLATE.relative_to(REPO_ROOT)} ({TEMPLATE.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
