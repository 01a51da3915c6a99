"""Real-browser test of the widgets: JupyterLab + Debian's Chromium driven by Playwright (never `playwright install`).

Starts JupyterLab on a free port in a temporary root/runtime/workspace folder, opens nbs/runs/widgets_demo.ipynb, runs
it, moves the codec playground's `true dx` slider with the keyboard and checks that the rendered PNG and the error
table changed as they should; then opens nbs/runs/grouping_demo.ipynb, types a new heatmap threshold into the grouping
inspector's slider and checks that the picture and the candidate and person counts changed; then opens
nbs/runs/ae_grouping_demo.ipynb and types a new tag threshold into the associative-embedding inspector: the persons fall
apart, the picture and the Hungarian cost table change. Screenshots go to screenshots/ (gitignored). Skips, with the reason, where Chromium,
JupyterLab or Playwright are absent (CI installs them: tools/install.sh and the dev extra)."""
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT / 'nbs' / 'runs' / 'widgets_demo.ipynb'
GROUPING_NB = ROOT / 'nbs' / 'runs' / 'grouping_demo.ipynb'
AE_NB = ROOT / 'nbs' / 'runs' / 'ae_grouping_demo.ipynb'
SHOTS = ROOT / 'screenshots'
CHROMIUM = os.environ.get('POSEBENCH_CHROMIUM', '/usr/bin/chromium')
ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
        '--no-first-run', '--disable-sync', '--disable-quic', '--disable-dev-shm-usage']
P = '.jp-NotebookPanel:not(.lm-mod-hidden)'  # the visible notebook (Lab may restore other tabs)


def _missing() -> str | None:
    if not Path(CHROMIUM).exists(): return f'{CHROMIUM} not found (apt-get install chromium; tools/install.sh does it)'
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError: return 'playwright (PyPI) not installed (dev extra)'
    try:
        import jupyterlab  # noqa: F401
    except ImportError: return 'jupyterlab not installed (dev extra)'
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    "A JupyterLab server on a free port whose root holds copies of the demo notebooks; yields its base URL."
    tmp = tmp_path_factory.mktemp('lab')
    root = tmp / 'root'; root.mkdir()
    for src in (NB, GROUPING_NB, AE_NB):
        nb = json.loads(src.read_text())  # a kernelspec, so Lab starts the kernel without asking
        nb['metadata']['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3 (ipykernel)', 'language': 'python'}
        (root / src.name).write_text(json.dumps(nb))
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp / 'runtime'), JUPYTERLAB_WORKSPACES_DIR=str(tmp / 'workspaces'),
               JUPYTERLAB_SETTINGS_DIR=str(tmp / 'settings'), JUPYTER_CONFIG_DIR=str(tmp / 'config'), MPLBACKEND='Agg',
               PATH=f'{Path(sys.executable).parent}{os.pathsep}{os.environ.get("PATH", "")}')  # the kernel: this venv's python
    port = _free_port()
    log = open(tmp / 'lab.log', 'w')
    proc = subprocess.Popen([sys.executable, '-m', 'jupyterlab', '--allow-root', '--no-browser', '--IdentityProvider.token=',
                             '--ServerApp.password=', f'--ServerApp.port={port}', '--ServerApp.port_retries=0',
                             '--ServerApp.ip=127.0.0.1', f'--ServerApp.root_dir={root}'], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f'http://127.0.0.1:{port}'
    try:
        t0 = time.time()
        while True:
            try:
                if urllib.request.urlopen(f'{base}/api/status', timeout=2).status == 200: break
            except OSError: pass
            if proc.poll() is not None or time.time() - t0 > 60:
                raise RuntimeError(f'JupyterLab did not start (exit {proc.poll()}):\n{(tmp / "lab.log").read_text()[-3000:]}')
            time.sleep(.3)
        yield base
    finally:
        proc.terminate()
        try: proc.wait(10)
        except subprocess.TimeoutExpired: proc.kill()
        log.close()


def _img_digest(pg, sel: str) -> str:
    "sha1 of the bytes behind the first `<img>` under `sel` (ipywidgets 8 Image uses blob: URLs)."
    data = pg.locator(sel).first.evaluate(
        "async img => { const b = await (await fetch(img.src)).arrayBuffer(); return Array.from(new Uint8Array(b)); }")
    return hashlib.sha1(bytes(data)).hexdigest()


def _open_and_run(pg, url: str) -> None:
    "Open a notebook in Lab, wait for its kernel, dismiss Lab's dialogs and Run All Cells."
    pg.goto(url, wait_until='domcontentloaded')
    pg.wait_for_selector(f'{P} .jp-Notebook .jp-Cell', timeout=90000)
    sel = pg.locator('.jp-Dialog button', has_text='Select')  # a kernel dialog, should Lab still ask
    if sel.count(): sel.first.click()
    pg.wait_for_selector(f'{P} .jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=90000)
    pg.wait_for_timeout(1500)  # "idle" shows slightly before the kernel takes requests
    no = pg.get_by_role('button', name='No', exact=True)  # the "Jupyter news?" toast
    if no.count(): no.first.click()
    pg.locator('.lm-MenuBar-itemLabel', has_text='Run').first.click()
    pg.locator('.lm-Menu-itemLabel', has_text='Run All Cells').first.click()


def test_playground_slider_redraws(lab):
    from playwright.sync_api import expect, sync_playwright
    SHOTS.mkdir(exist_ok=True)
    t0 = time.time()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = b.new_page(viewport={'width': 1280, 'height': 1000})
        try:
            _open_and_run(pg, f'{lab}/lab/tree/{NB.name}?reset')
            pw = f'{P} .posebench-widget'  # the three widgets, in notebook order: playground first
            pg.wait_for_selector(f'{pw} img.widget-image', timeout=90000)
            pg.wait_for_selector(f'{P} .jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=90000)
            pg.wait_for_function(f'document.querySelectorAll("{pw} img.widget-image").length >= 3', timeout=60000)
            play = pg.locator(pw).first
            table = play.locator('.posebench-table')
            before_txt, before_img = table.inner_text(), _img_digest(pg, f'{pw} img.widget-image')
            assert 'argmax' in before_txt and '0.424' in before_txt, before_txt  # |(.3, .3)| at the start
            play.screenshot(path=str(SHOTS / 'playground_before.png'))
            pg.screenshot(path=str(SHOTS / 'lab_before.png'))
            slider = play.locator('.widget-slider', has_text='true dx')
            slider.locator('.noUi-handle').click()
            for _ in range(10): pg.keyboard.press('ArrowRight')  # 0.30 → 0.40 in steps of 0.01
            # each key press is a change the kernel redraws for; wait for the last one (true x = 23 + 0.40)
            expect(table).to_contain_text('23.400', timeout=30000)  # a locator: the HTML widget replaces its <table>
            readout = slider.locator('.widget-readout').inner_text()
            after_txt = table.inner_text()
            assert readout.strip() == '0.40', readout
            assert '0.500' in after_txt and '0.424' not in after_txt, after_txt  # argmax error |(.4, .3)| = 0.5
            pg.wait_for_timeout(500)
            after_img = _img_digest(pg, f'{pw} img.widget-image')
            assert after_img != before_img  # the PNG itself changed, not just its blob URL
            play.screenshot(path=str(SHOTS / 'playground_after.png'))
            ex = pg.locator(pw).nth(1); ex.scroll_into_view_if_needed(); ex.screenshot(path=str(SHOTS / 'explorer.png'))
            br = pg.locator(pw).nth(2); br.scroll_into_view_if_needed(); br.screenshot(path=str(SHOTS / 'browser.png'))
        except Exception:
            pg.screenshot(path=str(SHOTS / 'lab_failure.png')); raise
        finally:
            b.close()
    assert time.time() - t0 < 120, f'browser test took {time.time() - t0:.0f} s'


def test_grouping_inspector_threshold(lab):
    "Typing a threshold of 0.97 into the inspector's slider: fewer candidates (GT peaks are 0.92–1), more persons, a new PNG."
    from playwright.sync_api import expect, sync_playwright
    SHOTS.mkdir(exist_ok=True)
    t0 = time.time()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = b.new_page(viewport={'width': 1280, 'height': 1000})
        try:
            _open_and_run(pg, f'{lab}/lab/tree/{GROUPING_NB.name}?reset')
            gi = pg.locator(f'{P} .posebench-widget').first
            gi.locator('img.widget-image').wait_for(timeout=90000)
            pg.wait_for_selector(f'{P} .jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=90000)
            table = gi.locator('.posebench-table')
            before_txt, before_img = table.inner_text(), _img_digest(pg, f'{P} .posebench-widget img.widget-image')
            cells = before_txt.split('\n')[-1].split('\t')  # the one row of numbers: persons / GT, ..., candidates, ...
            assert cells[0].strip() == '4 / 4' and cells[6].strip() == '55', before_txt  # scene 0: 4 persons, 55 keypoints, all found
            gi.screenshot(path=str(SHOTS / 'grouping_before.png'))
            readout = gi.locator('.widget-slider', has_text='threshold').locator('.widget-readout')
            readout.fill('0.97'); readout.press('Enter')  # one change, one decode
            note = gi.locator('.posebench-table + small')
            expect(note).to_contain_text('thr 0.97', timeout=30000)
            after = table.inner_text().split('\n')[-1].split('\t')
            assert int(after[6]) < 55, after  # peaks below 0.97 are no longer candidates
            assert after[0].strip() != '4 / 4', after  # ... and the persons fall apart
            pg.wait_for_timeout(500)
            assert _img_digest(pg, f'{P} .posebench-widget img.widget-image') != before_img
            gi.screenshot(path=str(SHOTS / 'grouping_after.png'))
        except Exception:
            pg.screenshot(path=str(SHOTS / 'grouping_failure.png')); raise
        finally:
            b.close()
    assert time.time() - t0 < 90, f'browser test took {time.time() - t0:.0f} s'


def test_ae_inspector_tag_threshold(lab):
    "Typing a tag threshold of 0.2 into the associative-embedding inspector (simulated tags, noise std 0.3): persons fall apart, the PNG and the cost table change."
    from playwright.sync_api import expect, sync_playwright
    SHOTS.mkdir(exist_ok=True)
    t0 = time.time()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = b.new_page(viewport={'width': 1280, 'height': 1100})
        try:
            _open_and_run(pg, f'{lab}/lab/tree/{AE_NB.name}?reset')
            ai = pg.locator(f'{P} .posebench-widget').first
            ai.locator('img.widget-image').wait_for(timeout=90000)
            pg.wait_for_selector(f'{P} .jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=90000)
            table = ai.locator('.posebench-table').first
            before_txt, before_img = table.inner_text(), _img_digest(pg, f'{P} .posebench-widget img.widget-image')
            cells = before_txt.split('\n')[-1].split('\t')  # persons / GT, fragments, mixed, split, missed, GT keypoints found, candidates, ...
            assert cells[0].strip().endswith('/ 4') and cells[6].strip() == '55', before_txt  # scene 0: 4 persons, 55 candidates
            cost_before = ai.locator('.posebench-table').nth(1).inner_text()
            assert 'cand' in cost_before and 'P0' in cost_before, cost_before  # the Hungarian step of the left wrist
            ai.screenshot(path=str(SHOTS / 'ae_inspector_before.png'))
            readout = ai.locator('.widget-slider', has_text='tag thr').locator('.widget-readout')
            readout.fill('0.2'); readout.press('Enter')  # one change, one decode
            expect(ai.locator('.posebench-table + small').first).to_contain_text('tag thr 0.2', timeout=30000)
            after = table.inner_text().split('\n')[-1].split('\t')
            assert int(after[0].split('/')[0]) > int(cells[0].split('/')[0]) and int(after[1]) > int(cells[1]), (cells, after)  # persons fall apart
            assert ai.locator('.posebench-table').nth(1).inner_text() != cost_before
            pg.wait_for_timeout(500)
            assert _img_digest(pg, f'{P} .posebench-widget img.widget-image') != before_img
            ai.screenshot(path=str(SHOTS / 'ae_inspector_after.png'))
        except Exception:
            pg.screenshot(path=str(SHOTS / 'ae_inspector_failure.png')); raise
        finally:
            b.close()
    assert time.time() - t0 < 120, f'browser test took {time.time() - t0:.0f} s'
