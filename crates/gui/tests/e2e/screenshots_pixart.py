#!/usr/bin/python3
"""Takes the README's PixArt-Σ work-screen screenshot (docs/work-pixart.png) from the real
app under Xvfb: a tiny random PixArt-Σ in ComfyUI's layout picked in the Checkpoint
drop-down (its recommended CFG 4.5 follows), T5 and the VAE picked, an image made.

Usage: screenshots_pixart.py OUT_DIR (run by scripts/screenshots.sh, inside xvfb-run and
dbus-run-session, with the app already started)."""
import sys

import driver
from screenshots import shoot


def main(out):
    driver.wait_for("the setup screen", lambda: driver.find("Welcome to imagelab"), timeout=60)
    driver.click(driver.find("Save and start", "push button"), "Save and start")
    driver.wait_for("the work screen", driver.ready_to_generate, timeout=120)
    driver.choose("Checkpoint", "tiny-sd15.safetensors")
    driver.choose("Checkpoint", "tiny-pixart-sigma.safetensors")
    driver.wait_for("the recommended CFG", lambda: driver.field_text("CFG scale") == "4.5")
    driver.choose("VAE", "sdxl_vae.safetensors")
    driver.choose("Text encoder (CLIP or T5)", "t5xxl.safetensors")
    driver.type_into("Prompt", "A Lighthouse at Dusk, (volumetric light:1.2)")
    driver.type_into("Seed", "42")
    driver.click(driver.ready_to_generate(), "Generate")
    driver.wait_for("the image", driver.thumbnails, timeout=300)
    vram = driver.wait_for("the VRAM panel", lambda: driver.find("VRAM"))
    driver.wait_for("PixArt's parts", lambda: "T5 (text encoder)" in driver.texts_under(vram))
    shoot(f"{out}/work-pixart.png")
    driver.close_window()


if __name__ == "__main__":
    main(sys.argv[1])
