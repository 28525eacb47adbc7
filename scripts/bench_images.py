"""Print what the images cost: size, cold build, rebuild after a view changes, up to healthy.

It asserts nothing; it prints figures for docs/operations.md (Images). The rebuild is measured in a copy of
the build context, so the working tree is never touched. Usage: make bench-images
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from compose_project import ROOT, ComposeProject, ensure_secret_file, free_port, project_name

SERVICES = ("nginx", "gunicorn", "uwsgi")


def timed(command: list[str], cwd: Path) -> float:
    started = time.monotonic()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, timeout=1800)
    return time.monotonic() - started


def build(service: str, context: Path, *extra: str) -> float:
    profiles = ["--profile", "gunicorn", "--profile", "uwsgi"]
    return timed(["docker", "compose", *profiles, "build", *extra, service], context)


def image_size_mb(service: str) -> float:
    done = subprocess.run(
        ["docker", "image", "inspect", f"wsgi-stack/{service}:latest"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)[0]["Size"] / 1e6


def copy_of_context() -> Path:
    target = Path(tempfile.mkdtemp(prefix="stack-bench-context-"))
    ignore = shutil.ignore_patterns(".venv", ".git", "results", "__pycache__", ".ci")
    shutil.copytree(ROOT, target, dirs_exist_ok=True, ignore=ignore)
    return target


def main() -> None:
    ensure_secret_file()
    rows: list[tuple[str, float, float, float]] = []
    for service in SERVICES:
        # Cold: no layer cache, base image present (pulling it is the network's time, not ours).
        cold = build(service, ROOT, "--no-cache")
        context = copy_of_context()
        try:
            views = context / "app" / "stack" / "views.py"
            views.write_text(views.read_text() + f"\n# rebuild probe {time.time()}\n")
            rebuild = build(service, context)
        finally:
            shutil.rmtree(context)
        build(service, ROOT)  # put the images back to the working tree's code
        rows.append((service, image_size_mb(service), cold, rebuild))

    print("\n| image | size | cold build | rebuild after a view changes |")
    print("| --- | --- | --- | --- |")
    for service, size, cold, rebuild in rows:
        print(f"| wsgi-stack/{service} | {size:.0f} MB | {cold:.0f} s | {rebuild:.1f} s |")

    print("\n| app server | `up` to healthy (images built) |")
    print("| --- | --- |")
    for server in ("gunicorn", "uwsgi"):
        stack = ComposeProject(server=server, project=project_name(server, "wsgi-bench-images"), port=free_port())
        try:
            print(f"| {server} | {stack.up():.1f} s |")
        finally:
            stack.down("--volumes")


if __name__ == "__main__":
    main()
