"""Regenerate the MLflow UI screenshots under docs/ from a real `mlflow ui` and a real headless Chromium.

Run `make run` first (the smoke sweep in runs/mlflow.db), then:
    apt-get install -y chromium chromium-driver         # Debian's browser and its driver
    pip install --target /tmp/selenium selenium==4.27.1  # not a project dependency: only this script needs it
    PYTHONPATH=/tmp/selenium .venv/bin/python docs/mlflow_screenshots.py [--db runs/mlflow.db] [--sweep smoke]
Writes docs/mlflow-runs-table.png (the sweep's children expanded), docs/mlflow-compare.png (Compare with the
objective in the parallel-coordinates plot) and docs/mlflow-lead-chart.png (a child's per-lead curve).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

DOCS = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_ui(db: Path, port: int) -> subprocess.Popen:
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", f"sqlite:///{db.resolve()}", "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            time.sleep(1)
    os.killpg(proc.pid, signal.SIGTERM)
    raise SystemExit("mlflow ui did not answer /health within 90 s")


def _runs(db: Path, sweep: str) -> tuple[str, str, list[str], list[str]]:
    """(experiment id, parent run id, child run ids best first, those that predict several frames)."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{db.resolve()}")
    parents = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id], "tags.`bubbles.role` = 'sweep'")
               if r.info.run_name == sweep]
    if not parents:
        raise SystemExit(f"no sweep {sweep!r} in {db}: run `make run` first")
    parent = parents[0]
    kids = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
                              order_by=["metrics.final_ssim DESC"])
    multi = [k.info.run_id for k in kids if int(k.data.params.get("output_len", 1)) > 1]
    return parent.info.experiment_id, parent.info.run_id, [k.info.run_id for k in kids], multi


def _choose(driver, box: int, names: list[str], defaults: int) -> None:  # type: ignore[no-untyped-def]
    """In Compare's parallel-coordinates panel (box 0: parameters, 1: metrics): replace the `defaults` entries MLflow
    picked by `names`. Its default parameters are the first ones alphabetically, which in a sweep over model
    families are family-specific ones (decouple_beta, hid_s): drawn over fake ranges for the runs that lack them."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    boxes = driver.find_elements(By.CSS_SELECTOR, "input[role='combobox']")
    if len(boxes) <= box:
        return
    field = boxes[box]
    field.click()
    for _ in range(defaults):
        field.send_keys(Keys.BACKSPACE)
    for name in names:
        field.send_keys(name)
        time.sleep(1)
        field.send_keys(Keys.ENTER)
    driver.find_element(By.TAG_NAME, "body").click()
    time.sleep(3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, default=Path("runs/mlflow.db"))
    ap.add_argument("--sweep", default="smoke")
    ap.add_argument("--out", type=Path, default=DOCS)
    args = ap.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    exp, parent, kids, multi = _runs(args.db, args.sweep)
    if not multi:
        raise SystemExit("no trial of this sweep predicts more than one frame: no per-lead chart to show")
    port = _free_port()
    ui = _start_ui(args.db, port)
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(flag)
    os.environ.setdefault("SE_AVOID_STATS", "true")
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    base = f"http://127.0.0.1:{port}/#"
    training = "workflowType=machine_learning"  # a fresh browser's UI starts in its GenAI mode, whatever the tag says
    try:
        driver.get(f"{base}/experiments/{exp}/runs?{training}")
        time.sleep(6)
        for button in driver.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']")[:1]:
            button.click()  # the assistant panel
        expander = "button[data-component-id$='runnamecellrenderer.tsx_46']"  # the '+' beside a parent run's name
        for button in driver.find_elements(By.CSS_SELECTOR, expander)[:1]:
            button.click()
            time.sleep(2)
        driver.save_screenshot(str(args.out / "mlflow-runs-table.png"))
        ids = json.dumps(kids)
        driver.get(f"{base}/compare-runs?runs={ids}&experiments={json.dumps([exp])}&{training}")
        time.sleep(8)
        _choose(driver, 0, ["model", "image_size", "lr", "epochs"], defaults=3)  # shared by every family
        _choose(driver, 1, ["final_ssim"], defaults=1)  # the objective's end-of-trial value, on the plot's last axis
        driver.save_screenshot(str(args.out / "mlflow-compare.png"))
        driver.get(f"{base}/experiments/{exp}/runs/{multi[0]}/model-metrics?{training}")
        time.sleep(6)
        for box in driver.find_elements(By.CSS_SELECTOR, "input[placeholder='Search metric charts']")[:1]:
            box.send_keys("ssim")  # the model's and every baseline's SSIM per lead (lead/…: step = lead time)
            time.sleep(3)
        driver.set_window_size(1600, 1650)  # tall enough for the lead group (model and baselines) below the epoch curves
        time.sleep(3)
        driver.save_screenshot(str(args.out / "mlflow-lead-chart.png"))
    finally:
        driver.quit()
        os.killpg(ui.pid, signal.SIGTERM)
    print("wrote", ", ".join(str(args.out / n) for n in ("mlflow-runs-table.png", "mlflow-compare.png", "mlflow-lead-chart.png")))


if __name__ == "__main__":
    main()
