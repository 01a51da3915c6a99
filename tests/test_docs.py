"""The docs site: built from the notebooks by `python tools/docs.py build` (a no-op when tools/test.sh has just built
it from the same inputs), then checked: every notebook has its page in its topic, no broken internal link or anchor,
nothing loaded from the network, and a headless Chromium visit finds the rendered figures and the API signatures."""
import json
import re
import subprocess
import sys
import threading
from functools import partial
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'tools'))
import docs  # noqa: E402

HTML = docs.HTML
CHROMIUM = Path('/usr/bin/chromium')
ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync']


@pytest.fixture(scope='session')
def site() -> Path:
    r = subprocess.run([sys.executable, str(ROOT / 'tools' / 'docs.py'), 'build', '--quiet'], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, f'docs build failed:\n{r.stdout[-4000:]}\n{r.stderr[-8000:]}'
    assert docs.up_to_date()
    return HTML


class _Page(HTMLParser):
    "Ids, links (a/link href, img/script src) and text of one HTML page."
    def __init__(self):
        super().__init__(); self.ids, self.refs, self.scripts = set(), [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get('id'): self.ids.add(a['id'])
        if tag in ('a', 'link') and a.get('href'): self.refs.append((tag, a['href']))
        if tag in ('img', 'script', 'iframe') and a.get('src'): self.refs.append((tag, a['src']))
        if tag == 'script' and a.get('src'): self.scripts.append(a['src'])


def _parse(p: Path) -> _Page:
    pg = _Page(); pg.feed(p.read_text(encoding='utf-8')); return pg


def test_every_notebook_has_its_page(site):
    nbs = docs.notebooks()
    assert len(nbs) >= 5 and (docs.NBS / 'index.ipynb') in nbs
    for nb in nbs:
        page = site / f'{docs.page_name(nb)}.html'
        assert page.exists(), f'{nb.relative_to(ROOT)}: no page {page.relative_to(site)}'
        cells = json.loads(nb.read_text(encoding='utf-8'))['cells']
        title = next((c['source'] for c in cells if c['cell_type'] == 'markdown'), '')  # after any raw frontmatter cell
        title = ''.join(title).splitlines()[0].lstrip('# ').strip() if title else ''
        if title: assert title.split('`')[0].strip()[:20] in page.read_text(encoding='utf-8'), f'{page.name}: title {title!r} missing'
        sec = docs.section_of(nb)
        if sec != 'home':  # listed on its topic's landing page, which the home page's navigation links
            assert f'{docs.page_name(nb)}.html' in (site / f'{sec}.html').read_text(encoding='utf-8'), f'{nb.name} not in {sec}.html'
            assert f'{sec}.html' in (site / 'index.html').read_text(encoding='utf-8')


def test_topics_follow_notebook_numbers():
    nb = lambda name: docs.NBS / name  # noqa: E731
    assert docs.page_name(nb('10_codecs.core.ipynb')) == 'codecs.core'
    assert docs.page_name(nb('runs/dataset_study.ipynb')) == 'runs/dataset_study'
    assert [docs.section_of(nb(n)) for n in ('index.ipynb', '00_core.ipynb', '01_geometry.ipynb', '03_data.synthetic.ipynb',
                                             '10_codecs.core.ipynb', '21_models.resnet.ipynb', '31_losses.ipynb', '50_vis.draw.ipynb',
                                             '61_tutorial.x.ipynb', '80_howto.conventions.ipynb', '97_test_utils.ipynb',
                                             'runs/dataset_study.ipynb')] == \
        ['home', 'concepts', 'concepts', 'data', 'codecs', 'models', 'training', 'vis', 'tutorials', 'getting-started', 'tools', 'tools']


def test_title_cell_is_a_title_and_a_one_sentence_summary():
    "nbdev turns the title cell into the page's frontmatter and drops the cell: its first `> ` line is the page's whole"
    "description (and the module docstring), and anything else in that cell never reaches the page."
    bad = []
    for nb in docs.notebooks():
        cells = json.loads(nb.read_text(encoding='utf-8'))['cells']
        title = ''.join(next((c['source'] for c in cells if c['cell_type'] == 'markdown'), ''))  # after any raw frontmatter
        m = re.fullmatch(r'# \S[^\n]*\n\n> ([^\n]+)', title.strip())
        name = nb.relative_to(ROOT)
        if not m: bad.append(f'{name}: the title cell is not `# Title`, a blank line and one `> ` line: {title[:200]!r}')
        elif not re.fullmatch(r'[A-Z`"\'].*\.', m.group(1).strip()): bad.append(f'{name}: the summary is not one sentence: {m.group(1)!r}')
    assert not bad, 'put the rest of the summary, and any prose, in a markdown cell below the title cell:\n' + '\n'.join(bad)


def test_no_broken_internal_links_and_nothing_from_the_network(site):
    pages = {p: _parse(p) for p in site.rglob('*.html') if '_static' not in p.relative_to(site).parts}  # theme templates
    broken, remote, n = [], [], 0
    for p, pg in pages.items():
        for tag, ref in pg.refs:
            u = urlsplit(ref)
            if u.scheme in ('http', 'https', 'mailto', 'data', 'javascript') or ref.startswith('//'):
                if tag in ('script', 'link', 'img', 'iframe') and u.scheme in ('http', 'https', ''):
                    if tag != 'link' or 'stylesheet' in ref or ref.endswith('.css'): remote.append(f'{p.name}: <{tag}> {ref}')
                continue
            n += 1
            target = (p.parent / unquote(u.path)).resolve() if u.path else p
            if target.is_dir(): target = target / 'index.html'
            if not target.exists(): broken.append(f'{p.relative_to(site)}: {ref}'); continue
            if u.fragment and target.suffix == '.html' and unquote(u.fragment) not in pages[target].ids:
                broken.append(f'{p.relative_to(site)}: {ref} (no such anchor)')
    assert n > 100
    assert not broken, f'{len(broken)} broken internal link(s):\n' + '\n'.join(broken[:40])
    assert not remote, 'pages load resources from the network:\n' + '\n'.join(remote[:20])


def test_plotly_js_shipped_once(site):
    assert (site / '_static' / 'plotly.min.js').stat().st_size > 1_000_000
    big = [p.name for p in site.rglob('*.html') if p.stat().st_size > 2_000_000]
    assert not big, f'pages carrying a copy of plotly.js (or huge outputs): {big}'


def _exports(nb_name: str) -> list[str]:
    "Top-level names a library notebook exports (from posebench._modidx), the ones show_doc documents."
    from posebench._modidx import d
    mod = re.search(r'default_exp\s+(\S+)', (docs.NBS / nb_name).read_text(encoding='utf-8')).group(1)
    syms = d['syms'].get(f'posebench.{mod}', {})
    return sorted({k.split('.')[2] for k in syms if not k.split('.')[2].startswith('_')})


@pytest.fixture(scope='module')
def browser(site):
    if not CHROMIUM.exists(): pytest.skip('Debian chromium not installed (/usr/bin/chromium): `apt-get install -y chromium`')
    sync_api = pytest.importorskip('playwright.sync_api', reason='playwright not installed (the dev extra has it)')
    srv = ThreadingHTTPServer(('127.0.0.1', 0), partial(_Quiet, directory=str(site)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b, f'http://127.0.0.1:{srv.server_address[1]}'
        b.close()
    srv.shutdown()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *a): pass


def _visit(browser, path: str) -> dict:
    b, base = browser
    pg = b.new_page(viewport={'width': 1280, 'height': 900})
    remote, errors = [], []
    pg.route('**/*', lambda r: (r.continue_() if r.request.url.startswith(base) else (remote.append(r.request.url), r.abort())))
    pg.on('pageerror', lambda e: errors.append(str(e)))
    pg.goto(f'{base}/{path}', wait_until='load')
    pg.wait_for_timeout(300)
    info = pg.evaluate('''() => {
        const art = document.querySelector('article.bd-article');
        const imgs = [...art.querySelectorAll('img')].map(i => [i.currentSrc.split('/').pop(), i.naturalWidth, i.naturalHeight]);
        const sigs = [...art.querySelectorAll('section[id]')].filter(s => s.querySelector(':scope > div.highlight-python pre'))
                     .map(s => [s.id, s.querySelector(':scope > div.highlight-python pre').innerText]);
        return {imgs, sigs, plotly_divs: art.querySelectorAll('.plotly-graph-div').length,
                plotly_svgs: art.querySelectorAll('.js-plotly-plot .main-svg').length,
                nav: [...document.querySelectorAll('.bd-header a.nav-link')].map(a => a.innerText.trim()),
                title: document.title};
    }''')
    pg.close()
    return dict(info, remote=remote, errors=errors)


def _check_figures(info, n_expected: int, page: str):
    assert len(info['imgs']) >= n_expected, f'{page}: {len(info["imgs"])} figures, expected {n_expected}'
    bad = [i for i in info['imgs'] if not (i[1] > 0 and i[2] > 0)]
    assert not bad, f'{page}: images that did not render: {bad}'
    assert info['plotly_svgs'] >= info['plotly_divs'], f'{page}: plotly divs without a drawn figure'
    assert not info['errors'], f'{page}: JavaScript errors {info["errors"]}'
    assert not info['remote'], f'{page}: requests to the network {info["remote"]}'


def _n_imgs(site, page):
    art = (site / page).read_text(encoding='utf-8').split('<article', 1)[1].split('</article>', 1)[0]
    return art.count('<img')


def test_browser_home(browser, site):
    info = _visit(browser, 'index.html')
    _check_figures(info, max(1, _n_imgs(site, 'index.html')), 'index.html')
    assert 'posebench' in info['title']
    nav = ' '.join(info['nav'])
    for topic in ('Concepts', 'Codecs', 'Models'): assert topic in nav, f'navigation lacks {topic}: {info["nav"]}'


@pytest.mark.parametrize('nb, min_figures', [('10_codecs.core.ipynb', 1), ('25_models.summary.ipynb', 1), ('20_models.layers.ipynb', 0)])
def test_browser_api_pages(browser, site, nb, min_figures):
    "The codec page and model pages: their figures rendered (at least the ones they are known to draw) and every export's signature."
    page = docs.page_name(docs.NBS / nb) + '.html'
    info = _visit(browser, page)
    _check_figures(info, max(min_figures, _n_imgs(site, page)), page)
    from docutils.nodes import make_id
    sigs = dict(info['sigs'])
    for name in _exports(nb):
        assert make_id(name) in sigs, f'{page}: no rendered signature for {name} (have {sorted(sigs)})'
        assert name in sigs[make_id(name)] and '(' in sigs[make_id(name)], f'{page}: {name}: {sigs[make_id(name)]!r}'


def test_browser_plotly_page(browser, site):
    pages = [p for p in sorted(site.rglob('*.html')) if 'plotly-graph-div' in p.read_text(encoding='utf-8')]
    if not pages: pytest.skip('no notebook shows a plotly figure')
    info = _visit(browser, str(pages[0].relative_to(site)))
    assert info['plotly_divs'] >= 1 and info['plotly_svgs'] >= info['plotly_divs'], info
    _check_figures(info, _n_imgs(site, str(pages[0].relative_to(site))), pages[0].name)
