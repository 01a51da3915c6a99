"""README.md from nbs/index.ipynb: execute the notebook (so every figure is made by the code), drop nbdev's hidden
cells and directives, convert to markdown. Figures go to README_files/. `--check` compares the text only."""
import os
import re
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import MarkdownExporter

ROOT = Path(__file__).resolve().parent.parent
_DIRECTIVE = re.compile(r'^#\|\s*([\w-]+)')


def render(execute: bool = True) -> tuple[str, dict]:
    os.environ.pop('MPLBACKEND', None)  # the kernel's inline backend, not a headless Agg set by the test script
    nb = nbformat.read(ROOT / 'nbs' / 'index.ipynb', as_version=4)
    if execute: NotebookClient(nb, timeout=600, kernel_name='python3', resources={'metadata': {'path': str(ROOT / 'nbs')}}).execute()
    cells = []
    for c in nb.cells:
        if c.cell_type == 'code':
            lines = c.source.splitlines()
            flags = {m.group(1) for m in map(_DIRECTIVE.match, lines) if m}
            if 'hide' in flags: continue
            c.source = '\n'.join(l for l in lines if not _DIRECTIVE.match(l)).strip()
            if 'hide_input' in flags or 'echo' in flags: c.source = ''
        cells.append(c)
    nb.cells = cells
    body, res = MarkdownExporter().from_notebook_node(nb, resources={'output_files_dir': 'README_files'})
    body = re.sub(r'\n{3,}', '\n\n', body).strip() + '\n'
    header = '<!-- generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file -->\n'
    return header + body, res.get('outputs', {})


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text, files = render()
    if '--check' in argv:
        old = (ROOT / 'README.md').read_text(encoding='utf-8') if (ROOT / 'README.md').exists() else ''
        if old != text:
            print('README.md is out of date: run `python tools/make_readme.py`'); return 1
        return 0
    (ROOT / 'README_files').mkdir(exist_ok=True)
    for old in (ROOT / 'README_files').glob('*'): old.unlink()
    for name, data in files.items(): (ROOT / name).write_bytes(data)
    (ROOT / 'README.md').write_text(text, encoding='utf-8')
    print(f'wrote README.md and {len(files)} figure(s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
