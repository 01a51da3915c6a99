"""The docs site, built from the notebooks, offline: `python tools/docs.py build` -> `_build/html/index.html`.

Steps (each cached, so a re-build after editing one notebook re-does only that one):
1. execute every notebook in nbs/ the way `nbdev_test` does (execnb, in-process, in the notebook's folder; cells
   flagged with settings.ini's `tst_flags` (slow, cuda) or `#| eval: false` are skipped and say so on the page)
   -> `_build/exec/` (outputs kept: matplotlib PNGs, plotly figures as JSON + a small HTML loader, show_doc);
2. nbdev's processors (`FilterDefaults`, what `nbdev.serve.proc_nbs` runs: frontmatter, show_doc for every
   export, hidden/exported cells removed, backticked names linked) -> `_proc/`;
3. a small converter -> `_build/src/`: Quarto-only constructs made plain (show_doc output becomes markdown), pages
   named as nbdev names them (`10_codecs.core.ipynb` -> `codecs.core.html`), one landing page per topic,
   grouped by notebook number (getting started, concepts, data, codecs, models, ...);
4. Sphinx + myst-nb + pydata-sphinx-theme (config in docs/conf.py) -> `_build/html/`; then links to the
   project's own doc host (nbdev's API links) are made relative, and CDN <script> tags are dropped: plotly.js is
   shipped once, from the plotly wheel, in `_static/` and loaded in <head>. Nothing is fetched from the network.

Usage: python tools/docs.py build [--jobs N] [--force] [--allow-errors] [--quiet]
       python tools/docs.py pages     # notebook -> page table, as the build names them
       python tools/docs.py clean
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from configparser import ConfigParser
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS, BUILD = ROOT / 'nbs', ROOT / '_build'
EXEC, SRC, HTML, STATIC = BUILD / 'exec', BUILD / 'src', BUILD / 'html', BUILD / 'static'
PROC = ROOT / '_proc'
EXEC_VERSION = '2'  # bump when the way notebooks are executed changes (invalidates _build/exec)
PLOTLY_RENDERER = 'plotly_mimetype+notebook_connected'  # a figure's JSON + a loader, not 4.8 MB of plotly.js each

# (key, title, blurb, first notebook number, last): the topic of a notebook is read from its number.
SECTIONS = [
    ('getting-started', 'Getting started', 'Install, the one coordinate convention, data, headless runs, troubleshooting.', 80, 89),
    ('concepts', 'Concepts', 'Keypoint schemas and the coordinate convention everything else builds on.', 0, 1),
    ('data', 'Data', 'Readers for COCO, MPII and CrowdPose, synthetic people, fetching, statistics, top-down and bottom-up datasets.', 2, 9),
    ('codecs', 'Codecs', 'Keypoints to heatmaps and back: the codec contract, Gaussian, DARK, UDP, integral, implicit heatmaps, guiding offsets.', 10, 19),
    ('models', 'Models', 'Backbones and heads with the official parameter names: ResNet, HRNet, Hourglass, HigherHRNet, OffsetGuided, IHL.', 20, 29),
    ('training', 'Training and evaluation', 'Losses, metrics, the training loop and its callbacks.', 30, 49),
    ('vis', 'Widgets and visualisation', 'Pure renderers, and widgets that wire controls to them.', 50, 59),
    ('tutorials', 'Tutorials', 'End-to-end stories; nothing exported.', 60, 79),
    ('tools', 'Runs and tools', 'Headless runs with their provenance, reference oracles, test fixtures.', 90, 99),
]


def cfg() -> dict:
    c = ConfigParser(delimiters=['='])
    c.read(ROOT / 'settings.ini', encoding='utf-8')
    return dict(c['DEFAULT'])


def notebooks() -> list[Path]:
    "Every notebook in nbs/ that nbdev would test (folders and files starting with `_` or `.` skipped), sorted."
    out = []
    for p in sorted(NBS.rglob('*.ipynb')):
        rel = p.relative_to(NBS)
        if any(part.startswith(('_', '.')) for part in rel.parts): continue
        out.append(p)
    return out


def page_name(nb: Path) -> str:
    "Page path (no suffix) of a notebook, as nbdev names it: `10_codecs.core.ipynb` -> `codecs.core`, `runs/x` stays."
    rel = nb.relative_to(NBS) if nb.is_absolute() else nb
    return str(rel.with_name(re.sub(r'^\d+[a-zA-Z0-9]*_', '', rel.name.lower())).with_suffix('')).replace(os.sep, '/')


def section_of(nb: Path) -> str:
    "Topic key of a notebook from its number (and folder); 'home' for index, 'tools' for nbs/runs/; codecs.* notebooks numbered after eval (the benchmark, the tutorial) stay with the codecs."
    rel = nb.relative_to(NBS)
    if rel.parts[0] == 'runs': return 'tools'
    if rel.stem == 'index': return 'home'
    if re.match(r'^\d+_codecs\.', rel.name): return 'codecs'
    m = re.match(r'^(\d+)', rel.name)
    if m:
        n = int(m.group(1))
        for key, _, _, lo, hi in SECTIONS:
            if lo <= n <= hi: return key
    return 'getting-started' if rel.name.startswith('howto') else 'tools'


# ---------------------------------------------------------------------------------------------------- 1. execute

def _digest(paths) -> str:
    h = hashlib.sha256()
    for p in paths: h.update(str(p.relative_to(ROOT)).encode()); h.update(p.read_bytes())
    return h.hexdigest()


def _directives(source: str) -> dict:
    "nbdev directives at the top of a cell: `#| slow` -> {'slow': ''}, `#| eval: false` -> {'eval': 'false'}."
    d = {}
    for line in source.splitlines():
        m = re.match(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*)$', line)
        if not m:
            if line.strip(): break
            continue
        d[m.group(1)] = m.group(2).strip()
    return d


def _exec_one(src: str, dst: str, key: str, flags: list[str], allow_errors: bool = False) -> tuple[str, float, str]:
    "Execute one notebook like nbdev_test (execnb.CaptureShell, cwd = its folder) and save it with its outputs."
    os.environ.pop('MPLBACKEND', None)  # execnb's inline backend captures figures; a headless Agg would not
    os.environ.update(IN_TEST='1', PLOTLY_RENDERER=PLOTLY_RENDERER)
    import multiprocessing
    if 'fork' in multiprocessing.get_all_start_methods():  # this worker was spawned, which made 'spawn' its default:
        multiprocessing.set_start_method('fork', force=True)  # restore the platform's, as under nbdev_test (DataLoader
    from execnb.nbio import read_nb, write_nb                  # workers must see classes the notebook defines)
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    from nbdev.frontmatter import FrontmatterProc
    from nbdev.process import NBProcessor
    src, dst, t0 = Path(src), Path(dst), time.time()
    fm = getattr(NBProcessor(src, procs=FrontmatterProc, process=True).nb, 'frontmatter_', {}) or {}
    nb = read_nb(src)  # unprocessed: the directives stay in the sources for nbdev's processing later
    skipped = {}

    def _no_eval(cell):
        if cell.cell_type != 'code': return True
        if 'nbdev_export' + '(' in cell.source: return True
        d = _directives(cell.source)
        if d.get('eval', '').lower() == 'false': return True
        hit = set(flags) & d.keys()
        if hit and not ({'hide', 'export', 'exports', 'exporti'} & d.keys()): skipped[id(cell)] = sorted(hit)[0]
        return bool(hit)

    if str(fm.get('skip_exec', '')).lower() in ('true', '1', 'yes'): _no_eval = lambda cell: True  # noqa: E731
    shell, err = CaptureShell(src), ''
    try:
        with working_directory(src.parent): shell.run_all(nb, exc_stop=True, preproc=_no_eval)
    except BaseException:
        err = shell.prettytb(fname=src)
        if not allow_errors: return str(src), time.time() - t0, err
    cells = [dict(cell_type='markdown', id=uuid.uuid4().hex[:8], metadata={},
                  source=':::{error}\nThis notebook failed when the docs were built; outputs stop at the failing cell.\n:::')] if err else []
    for c in nb.cells:
        cells.append(c)
        if id(c) in skipped:
            cells.append(dict(cell_type='markdown', id=uuid.uuid4().hex[:8], metadata={},
                              source=f'*The cell above is flagged `#| {skipped[id(c)]}`: it is not run when these docs are built; '
                                     f'run the notebook (`nbdev_test --flags {skipped[id(c)]}`) to see its output.*'))
    nb.cells = cells
    nb.metadata['posebench_docs'] = {'key': 'failed' if err else key}
    dst.parent.mkdir(parents=True, exist_ok=True)
    write_nb(nb, dst)
    return str(src), time.time() - t0, err


def execute(nbs: list[Path], jobs: int, force: bool, log, allow_errors: bool = False) -> None:
    flags = cfg().get('tst_flags', '').split()
    pkg = _digest(sorted((ROOT / cfg().get('lib_path', 'posebench')).rglob('*.py')))
    env = f"{EXEC_VERSION}|{pkg}|{' '.join(flags)}|shared={(ROOT.parent / 'shared' / 'data').exists()}"
    todo = []
    for nb in nbs:
        dst = EXEC / nb.relative_to(NBS)
        key = hashlib.sha256((env + '|' + _digest([nb])).encode()).hexdigest()
        if not force and dst.exists():
            try:
                if json.loads(dst.read_text(encoding='utf-8'))['metadata'].get('posebench_docs', {}).get('key') == key: continue
            except (ValueError, KeyError): pass
        todo.append((str(nb), str(dst), key, flags, allow_errors))
    for stale in EXEC.rglob('*.ipynb') if EXEC.exists() else []:  # notebooks removed from nbs/
        if not (NBS / stale.relative_to(EXEC)).exists(): stale.unlink()
    log(f'execute: {len(todo)} of {len(nbs)} notebook(s) to run ({len(nbs) - len(todo)} cached), {jobs} worker(s)')
    if not todo: return
    failed = []
    sys.path.insert(0, str(Path(__file__).parent))  # workers find `_exec_one` as docs._exec_one: IPython replaces __main__
    import docs as this
    with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=get_context('spawn')) as ex:
        for src, dt, err in ex.map(this._exec_one, *zip(*todo)):
            log(f'  {dt:6.1f} s  {Path(src).relative_to(NBS)}' + ('  FAILED' if err else ''))
            if err: failed.append((src, err))
    if failed:
        for src, err in failed: sys.stderr.write(f'\n---- {src}\n{err}\n')
        if allow_errors: return log(f'execute: {len(failed)} notebook(s) FAILED; their pages say so (--allow-errors)')
        raise SystemExit(f'docs: {len(failed)} notebook(s) failed to execute: ' + ', '.join(Path(s).name for s, _ in failed))


# ---------------------------------------------------------------------------------------------------- 2. nbdev proc

def _proc_one(src: str, dst: str) -> tuple[str, str]:
    "nbdev's FilterDefaults processors on one executed notebook (what `nbdev.serve.proc_nbs` runs per file)."
    os.environ.pop('MPLBACKEND', None)
    os.environ.update(IN_TEST='1', PLOTLY_RENDERER=PLOTLY_RENDERER)
    import multiprocessing
    if 'fork' in multiprocessing.get_all_start_methods():  # this worker was spawned, which made 'spawn' its default:
        multiprocessing.set_start_method('fork', force=True)  # restore the platform's, as under nbdev_test (DataLoader
    from execnb.nbio import read_nb, write_nb                  # workers must see classes the notebook defines)
    from fastcore.xtras import working_directory
    from nbdev import processors

    class exec_show_docs(processors.exec_show_docs):
        "As nbdev's, except that a cell mixing imports with other code (which nbdev runs, warning) may fail: only"
        "exported cells and show_doc cells must run; and a cell keeps the outputs step 1 executed (nbdev's re-run, only"
        "there to define names for show_doc, would replace them, e.g. with the empty axes of a re-run that failed)."
        def __call__(self, cell):
            kept = list(cell.get('outputs') or [])  # what step 1 executed: re-running a cell for its names must not replace it
            try: return super().__call__(cell)
            except Exception:
                if (getattr(cell, 'directives_', {}) or {}).keys() & {'export', 'exports', 'exporti'} or 'show_doc' in cell.source: raise
                self.k.exc = None
            finally:
                if kept and 'show_doc' not in cell.source: cell.outputs = kept

    class Filter(processors.FilterDefaults):
        def base_procs(self): return [exec_show_docs if p is processors.exec_show_docs else p for p in super().base_procs()]

    nb = read_nb(src)  # its title cell holds one summary line (tests/test_docs.py): nbdev's description is that line
    try:
        with working_directory(ROOT):  # nbdev finds settings.ini from the working directory
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')  # "Found cells containing imports and other code"
                Filter()(nb)
    except Exception as e:
        import traceback
        return src, ''.join(traceback.format_exception(e))
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    write_nb(nb, dst)
    return src, ''


def process(nbs: list[Path], jobs: int, log) -> None:
    "nbdev's processing (show_doc for every export, hidden and exported cells removed, links) of the executed notebooks"
    "-> _proc/, re-done for a notebook only when its executed copy is newer (as proc_nbs's mtime cache)."
    todo = []
    for nb in nbs:
        src, dst = EXEC / nb.relative_to(NBS), PROC / nb.relative_to(NBS)
        if not dst.exists() or dst.stat().st_mtime < max(src.stat().st_mtime, (ROOT / 'settings.ini').stat().st_mtime):
            todo.append((str(src), str(dst)))
    log(f'nbdev processing: {len(todo)} of {len(nbs)} notebook(s) ({len(nbs) - len(todo)} cached)')
    if not todo: return
    sys.path.insert(0, str(Path(__file__).parent))
    import docs as this
    failed = []
    with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=get_context('spawn')) as ex:
        for src, err in ex.map(this._proc_one, *zip(*todo)):
            if err: failed.append((src, err))
    if failed:
        for src, err in failed: sys.stderr.write(f'\n---- {src}\n{err}\n')
        raise SystemExit('docs: nbdev processing failed for ' + ', '.join(Path(s).name for s, _ in failed))


# ---------------------------------------------------------------------------------------------------- 3. convert

_ATTR = re.compile(r'\)\{[^}\n]*\}')  # [source](url){target="_blank" style="..."} -> [source](url)
_DIR = re.compile(r'^#\|\s*([\w-]+)\s*:?\s*(.*)$')
_NBLINK = re.compile(r'\]\((?!\w+:)([^)#\s]*?)(\d+[a-zA-Z0-9]*_)?([^)#\s/]+)\.ipynb(#[^)\s]*)?\)')


def _text(x) -> str: return ''.join(x) if isinstance(x, list) else (x or '')


def _frontmatter(cell) -> dict:
    import yaml
    body = _text(cell['source']).strip().strip('-')
    try: d = yaml.safe_load(body) or {}
    except yaml.YAMLError: d = {}
    return {k: ' '.join(str(v).split()) for k, v in d.items()} if isinstance(d, dict) else {}


def _nb_links(md: str) -> str:
    "Markdown links to notebooks (`02_data.readers.ipynb`) point at the page as named on the site (`data.readers.ipynb`)."
    return _NBLINK.sub(lambda m: '](' + m.group(1) + m.group(3).lower() + '.ipynb' + (m.group(4) or '') + ')', md)


def convert(nb: dict) -> tuple[dict, dict]:
    "A processed (_proc) notebook -> a plain one myst-nb renders; returns it and its frontmatter (title, description)."
    out, fm = [], {}
    for c in nb['cells']:
        c.get('metadata', {}).pop('execution', None)  # execnb's float timing is not valid nbformat
        if c['cell_type'] == 'raw' and _text(c['source']).lstrip().startswith('---'):
            fm = _frontmatter(c)
            if 'title' in fm:
                s = f"# {fm['title']}" + (f"\n\n> {fm['description']}" if fm.get('description') else '')
                out.append(dict(id=uuid.uuid4().hex[:8], cell_type='markdown', metadata={}, source=s))
            continue
        if c['cell_type'] == 'markdown':
            c['source'] = _nb_links(_text(c['source'])); out.append(c); continue
        if c['cell_type'] != 'code': out.append(c); continue
        lines, dirs = _text(c['source']).splitlines(), {}
        while lines and _DIR.match(lines[0]):
            k, v = _DIR.match(lines[0]).groups(); dirs[k] = v.strip(); lines.pop(0)
        c['source'] = '\n'.join(lines)
        tags = set(c.get('metadata', {}).get('tags', []))
        if dirs.get('output') == 'asis':  # show_doc -> a markdown cell (the API reference)
            md = [_text(o['data']['text/markdown']) for o in c.get('outputs', []) if 'text/markdown' in o.get('data', {})]
            if md:
                out.append(dict(id=c.get('id') or uuid.uuid4().hex[:8], cell_type='markdown', metadata={'tags': ['show-doc']},
                                source=re.sub(r'^\s*---\s*\n', '', _ATTR.sub(')', '\n'.join(md)))))  # no rule first
                continue
        if dirs.get('echo') == 'false': tags.add('remove-input')
        if dirs.get('output') == 'false': tags.add('remove-output')
        c['outputs'] = [o for o in c.get('outputs', []) if not (o.get('output_type') == 'execute_result' and not o.get('data'))]
        if tags: c.setdefault('metadata', {})['tags'] = sorted(tags)
        if c['source'].strip() or c['outputs']: out.append(c)
    nb['cells'] = out
    nb['metadata'] = {'kernelspec': {'display_name': 'Python 3', 'language': 'python', 'name': 'python3'},
                      'language_info': {'name': 'python', 'pygments_lexer': 'ipython3'}}
    return nb, fm


def _md_cell(s: str) -> dict: return dict(id=uuid.uuid4().hex[:8], cell_type='markdown', metadata={}, source=s)


def assemble(nbs: list[Path], log) -> dict:
    "Write the Sphinx source tree: converted notebooks, topic landing pages, the home page's toctree; returns {page: section}."
    shutil.rmtree(SRC, ignore_errors=True); SRC.mkdir(parents=True)
    pages, meta = {}, {}
    for nb in nbs:
        rel = nb.relative_to(NBS)
        proc = PROC / rel
        if not proc.exists(): raise SystemExit(f'docs: {proc} missing after nbdev processing')
        conv, fm = convert(json.loads(proc.read_text(encoding='utf-8')))
        name = page_name(nb)
        dst = SRC / f'{name}.ipynb'; dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(json.dumps(conv, indent=1, ensure_ascii=False), encoding='utf-8')
        pages[name] = section_of(nb)
        meta[name] = (fm.get('title') or rel.stem, fm.get('description', ''), str(rel))
    for f in NBS.rglob('*'):  # images and other files the notebooks refer to
        rel = f.relative_to(NBS)
        if f.is_file() and f.suffix != '.ipynb' and not any(p.startswith(('_', '.')) for p in rel.parts):
            (SRC / rel).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(f, SRC / rel)
    sections = []
    for key, title, blurb, *_ in SECTIONS:
        members = [p for p, s in pages.items() if s == key]
        if not members: continue
        sections.append(key)
        rows = '\n'.join(f'| [{meta[p][0]}]({p}.ipynb) | {meta[p][1]} | `nbs/{meta[p][2]}` |' for p in members)
        (SRC / f'{key}.md').write_text(
            f'# {title}\n\n{blurb}\n\n| page | what | notebook |\n|---|---|---|\n{rows}\n\n'
            '```{toctree}\n:hidden:\n:maxdepth: 1\n\n' + '\n'.join(members) + '\n```\n', encoding='utf-8')
    idx = SRC / 'index.ipynb'
    home = json.loads(idx.read_text(encoding='utf-8'))
    home['cells'].append(_md_cell('```{toctree}\n:hidden:\n:maxdepth: 2\n\n' + '\n'.join(sections) + '\n```'))
    idx.write_text(json.dumps(home, indent=1, ensure_ascii=False), encoding='utf-8')
    STATIC.mkdir(parents=True, exist_ok=True)
    import plotly
    js = Path(plotly.__file__).parent / 'package_data' / 'plotly.min.js'
    if not (STATIC / 'plotly.min.js').exists() or (STATIC / 'plotly.min.js').stat().st_size != js.stat().st_size:
        shutil.copy2(js, STATIC / 'plotly.min.js')
    log(f'convert: {len(pages)} page(s) in {len(sections)} section(s): ' + ', '.join(sections))
    return pages


# ---------------------------------------------------------------------------------------------------- 4. sphinx

_CDN_SCRIPT = re.compile(r'<script[^>]*\ssrc="https?://[^"]*"[^>]*>\s*</script>\s*'  # MathJax etc. from plotly's HTML
                         r'|<script type="module">\s*import\s+"https?://[^"]*"\s*;?\s*</script>\s*')  # plotly's CDN loader


def sphinx(jobs: int, quiet: bool) -> None:
    cmd = [sys.executable, '-m', 'sphinx', '-b', 'html', '-c', str(ROOT / 'docs'), '-d', str(BUILD / 'doctrees'),
           '-j', str(jobs), '-W', '--keep-going', str(SRC), str(HTML)] + (['-q'] if quiet else [])
    r = subprocess.run(cmd, cwd=BUILD)  # myst-nb writes jupyter_execute/ beside the output: keep it in _build/
    if r.returncode: raise SystemExit(f'docs: sphinx-build failed (exit {r.returncode})')


def postprocess(log) -> None:
    "Links to the project's own doc host -> relative links (anchors as docutils ids); CDN <script> tags dropped."
    from docutils.nodes import make_id
    c = cfg()
    host = re.escape((c.get('doc_host', '') + c.get('doc_baseurl', '')).rstrip('/') + '/')
    own = re.compile(r'href="' + host + r'([^"#]*)(#[^"]*)?"')
    n_links = n_scripts = 0
    pages = {p: p.read_text(encoding='utf-8') for p in HTML.rglob('*.html') if '_static' not in p.relative_to(HTML).parts}
    ids = {p.relative_to(HTML).as_posix(): set(re.findall(r'\sid="([^"]+)"', t)) for p, t in pages.items()}

    def _anchor(target: str, frag: str) -> str:
        "nbdev's anchor `decoded.to_image` as a docutils id; falls back to `decoded`, then to the page itself."
        parts = frag.split('.')
        for k in range(len(parts), 0, -1):
            a = make_id('.'.join(parts[:k]))
            if a in ids.get(target, ()): return f'#{a}'
        return ''
    for page, text in pages.items():
        up = '../' * (len(page.relative_to(HTML).parts) - 1)

        def _rel(m):
            nonlocal n_links; n_links += 1
            target = m.group(1) or 'index.html'
            return f'href="{up}{target}' + (_anchor(target, m.group(2)[1:]) if m.group(2) else '') + '"'
        new = own.sub(_rel, text)
        new, k = _CDN_SCRIPT.subn('', new)
        n_scripts += k
        if new != text: page.write_text(new, encoding='utf-8')
    log(f'postprocess: {n_links} API link(s) made relative, {n_scripts} CDN script tag(s) removed')


def site_size() -> float: return sum(f.stat().st_size for f in HTML.rglob('*') if f.is_file()) / 2**20


def inputs_digest() -> str:
    "Everything the site is built from: notebooks (and files beside them), the package, docs/, this script, settings."
    files = [f for f in NBS.rglob('*') if f.is_file() and not any(p.startswith(('_', '.')) for p in f.relative_to(NBS).parts)]
    files += list((ROOT / cfg().get('lib_path', 'posebench')).rglob('*.py')) + [f for f in (ROOT / 'docs').rglob('*') if f.is_file()]
    files += [Path(__file__).resolve(), ROOT / 'settings.ini']
    return hashlib.sha256((_digest(sorted(files)) + str((ROOT.parent / 'shared' / 'data').exists())).encode()).hexdigest()


STAMP = HTML / '.posebench-build.json'


def up_to_date() -> bool:
    "True when _build/html was built (successfully, without --allow-errors) from exactly the current inputs."
    try: return json.loads(STAMP.read_text())['inputs'] == inputs_digest()
    except (OSError, ValueError, KeyError): return False


def build(jobs: int, force: bool, quiet: bool, allow_errors: bool = False) -> None:
    t0 = time.time()

    def log(msg): print(f'[{time.time() - t0:6.1f} s] {msg}', flush=True)
    if not force and up_to_date(): return log(f'site up to date: {HTML / "index.html"} (inputs unchanged; --force rebuilds)')
    os.environ['PYDEVD_DISABLE_FILE_VALIDATION'] = '1'
    digest = inputs_digest()
    nbs = notebooks()
    if not (NBS / 'index.ipynb').exists(): raise SystemExit('docs: nbs/index.ipynb (the home page) is missing')
    execute(nbs, jobs, force, log, allow_errors)
    process(nbs, jobs, log)
    assemble(nbs, log)
    for d in (HTML, BUILD / 'doctrees', BUILD / 'jupyter_execute'): shutil.rmtree(d, ignore_errors=True)  # no stale pages
    sphinx(jobs, quiet); log('sphinx: done')
    postprocess(log)
    if not allow_errors: STAMP.write_text(json.dumps({'inputs': digest, 'seconds': round(time.time() - t0, 1)}))
    log(f'site: {HTML / "index.html"} ({site_size():.1f} MB, {len(list(HTML.rglob("*.html")))} pages) in {time.time() - t0:.0f} s')


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('command', choices=['build', 'pages', 'clean'])
    ap.add_argument('--jobs', type=int, default=min(2, os.cpu_count() or 1), help='parallel workers (default: min(2, cpus))')
    ap.add_argument('--force', action='store_true', help='re-execute every notebook and rebuild every page')
    ap.add_argument('--allow-errors', action='store_true', help='build even if a notebook fails (its page says so); default: fail')
    ap.add_argument('--quiet', action='store_true', help="less of sphinx's output")
    a = ap.parse_args(argv)
    if a.command == 'clean':
        for d in (BUILD, PROC): shutil.rmtree(d, ignore_errors=True)
    elif a.command == 'pages':
        for nb in notebooks(): print(f'{str(nb.relative_to(NBS)):40s} {section_of(nb):16s} {page_name(nb)}.html')
    else:
        build(a.jobs, a.force, a.quiet, a.allow_errors)
    return 0


if __name__ == '__main__':
    sys.exit(main())
