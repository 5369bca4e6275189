#!/usr/bin/python3
"""The GUI benchmark's driver: with the app started on a folder of 10,000 images, loads the
model and generates N images one after another, so the app's IMAGELAB_GUI_TRACE file
records the window's start, click-to-accepted delays and preview-to-paint delays.

Usage: bench.py N (run by scripts/gui-bench.sh inside xvfb-run and dbus-run-session)."""
import sys

import driver


def main(count):
    driver.wait_for("the work screen", driver.ready_to_generate, timeout=120)
    driver.click(driver.find("Load model", "push button"), "Load model")
    vram = driver.wait_for("the VRAM panel", lambda: driver.find("VRAM"))
    driver.wait_for("the loaded model", lambda: "UNet" in driver.texts_under(vram), timeout=120)
    driver.type_into("Prompt", "a lighthouse, {dawn|dusk|night}")
    for i in range(count):
        driver.click(driver.ready_to_generate(), "Generate")
        done = f"Image {i + 1} done"
        driver.wait_for(done, lambda: driver.anywhere(done), timeout=300)
        driver.ok(done)
    driver.close_window()


if __name__ == "__main__":
    main(int(sys.argv[1]))
