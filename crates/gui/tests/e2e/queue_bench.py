#!/usr/bin/python3
"""The queue benchmark's driver. `submit`: on the Queue page, 10,000 jobs arrive from the
CLI (ten submits of 1,000, the queue paused), then 20 of them run (a progress event per
step), so the app's IMAGELAB_GUI_TRACE file records how long each batch of new rows and
each row update took on the main thread; prints how long the page took to show all 10,000.
`reopen`: a new app on the same daemon data lists the 10,000 jobs at start.

Usage: queue_bench.py submit|reopen (run by scripts/queue-bench.sh under xvfb-run and
dbus-run-session, with the app started and IMAGELAB_BIN naming the CLI)."""
import os
import subprocess
import sys
import time

import driver

JOBS = 10_000


def cli(*args):
    subprocess.run([os.environ["IMAGELAB_BIN"], *args], check=True, stdout=subprocess.DEVNULL)


def done_jobs():
    out = subprocess.run([os.environ["IMAGELAB_BIN"], "queue", "status"], check=True,
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if parts[:1] == ["done"]:
            return int(parts[1])
    return 0


def submit():
    driver.wait_for("the work screen", driver.ready_to_generate, timeout=120)
    driver.click(driver.wait_for("the Queue page", lambda: driver.actionable("Queue")), "Queue")
    cli("queue", "pause")
    started = time.monotonic()
    for _ in range(JOBS // 1000):
        cli("submit", "--model", "tiny.safetensors", "--prompt", "a lighthouse, {dawn|dusk}",
            "--width", "64", "--height", "64", "--steps", "10", "--count", "1000")
    submitted = time.monotonic()
    driver.wait_for("every job on the page", lambda: driver.anywhere(f"{JOBS} of {JOBS} jobs"), timeout=300)
    shown = time.monotonic()
    print(f"submit 10 x 1000 jobs: {submitted - started:.2f} s; all {JOBS} on the page "
          f"{shown - submitted:.2f} s after the last submit", flush=True)
    cli("queue", "resume")
    driver.wait_for("20 jobs run", lambda: done_jobs() >= 20, timeout=600)
    cli("queue", "pause")
    driver.close_window()


def reopen():
    driver.wait_for("the work screen", driver.ready_to_generate, timeout=120)
    driver.click(driver.wait_for("the Queue page", lambda: driver.actionable("Queue")), "Queue")
    driver.wait_for("every job listed", lambda: driver.anywhere(f"of {JOBS} jobs"), timeout=120)
    driver.close_window()


if __name__ == "__main__":
    {"submit": submit, "reopen": reopen}[sys.argv[1]]()
