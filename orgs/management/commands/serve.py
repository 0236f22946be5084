"""Run the ASGI server, a Celery worker and Celery beat together; Ctrl-C stops all."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from inferia.server import uvicorn_command


def process_commands(
    *, host: str, port: int, schedule: str, worker: bool = True, web_workers: int = 1
) -> dict[str, list[str]]:
    """The command lines of the web process, the Celery worker and Celery beat: what
    ``serve`` runs, and what the fault-injection suite (tests/faults) starts and kills."""
    python = sys.executable
    extra = ("--workers", str(web_workers)) if web_workers > 1 else ()
    commands = {
        "web": uvicorn_command(python, host, port, *extra),
    }
    if worker:
        commands["worker"] = [
            python,
            "-m",
            "celery",
            "-A",
            "inferia",
            "worker",
            "-l",
            "info",
            "--concurrency",
            "2",
            "--without-mingle",
            "--without-gossip",
        ]
        commands["beat"] = [
            python,
            "-m",
            "celery",
            "-A",
            "inferia",
            "beat",
            "-l",
            "info",
            "--schedule",
            schedule,
        ]
    return commands


def metrics_directory() -> str:
    """Where every child writes its metrics (prometheus_client's multiprocess mode):
    the operator's ``PROMETHEUS_MULTIPROC_DIR`` as is, else ``INFERIA_METRICS_DIR``
    emptied first (files of a previous run would be summed into this one's counters)."""
    if settings.PROMETHEUS_MULTIPROC_DIR:
        Path(settings.PROMETHEUS_MULTIPROC_DIR).mkdir(mode=0o700, parents=True, exist_ok=True)
        return settings.PROMETHEUS_MULTIPROC_DIR
    folder = Path(settings.INFERIA_METRICS_DIR)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(mode=0o700, parents=True)
    return str(folder)


class Command(BaseCommand):
    help = "Serve on 127.0.0.1:$PORT with uvicorn, plus a Celery worker and beat."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--no-worker", action="store_true", help="Serve only the web app.")
        parser.add_argument(
            "--workers", type=int, default=1, help="uvicorn worker processes (default 1)."
        )

    def handle(self, *args, **options) -> None:
        commands = process_commands(
            host=options["host"],
            port=options["port"],
            schedule=settings.CELERY_BEAT_SCHEDULE_FILENAME,
            worker=not options["no_worker"],
            web_workers=max(1, options["workers"]),
        )
        # PORT: jobs (worker, beat) build links in mails to the port served here.
        env = {**os.environ, "INFERIA_PRINT_CONFIG": "0", "PORT": str(options["port"])}
        env["PROMETHEUS_MULTIPROC_DIR"] = metrics_directory()
        children = {name: subprocess.Popen(cmd, env=env) for name, cmd in commands.items()}  # noqa: S603
        self.stdout.write(
            f"{settings.CONFIG_SUMMARY}\nserving on http://{options['host']}:{options['port']} "
            f"({', '.join(children)}); Ctrl-C stops all\n"
        )
        stopping = False

        def stop(signum, frame) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        exit_code = 0
        try:
            while not stopping:
                for name, child in children.items():
                    if child.poll() is not None:
                        self.stderr.write(
                            f"{name} exited with {child.returncode}; stopping the rest\n"
                        )
                        exit_code = child.returncode or 1
                        stopping = True
                        break
                time.sleep(0.5)
        finally:
            for child in children.values():
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            for child in children.values():
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()
        sys.exit(exit_code)
