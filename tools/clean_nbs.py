"""Keep the notebooks in nbs/ clean in git: nbdev's normalisation (cell ids, metadata) plus no outputs and no
execution counts, one kernelspec; the `tags` cell metadata (papermill's `parameters`) stays. `--check` only reports, exit 1 if dirty."""
import json
import sys
from pathlib import Path

from nbdev.clean import _nbdev_clean

KERNEL = {'display_name': 'Python 3 (ipykernel)', 'language': 'python', 'name': 'python3'}


def clean_text(path: Path) -> str:
    nb = json.loads(path.read_text(encoding='utf-8'))
    _nbdev_clean(nb, path)
    nb['metadata'].pop('jupytext', None)  # authoring-tool residue
    nb['metadata']['kernelspec'] = KERNEL  # papermill and JupyterLab need one; always the same
    for c in nb['cells']:
        if c['cell_type'] == 'code': c['outputs'], c['execution_count'] = [], None
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + '\n'


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    check = '--check' in argv
    root = Path(__file__).resolve().parent.parent / 'nbs'
    dirty = []
    for p in sorted(root.rglob('*.ipynb')):
        if any(part.startswith(('.', '_')) for part in p.relative_to(root).parts): continue
        new = clean_text(p)
        if new != p.read_text(encoding='utf-8'):
            dirty.append(p.relative_to(root.parent))
            if not check: p.write_text(new, encoding='utf-8')
    if check and dirty:
        print('notebooks not clean (outputs or metadata); run `python tools/clean_nbs.py`:', *dirty, sep='\n  ')
        return 1
    if dirty: print('cleaned:', *dirty, sep='\n  ')
    return 0


if __name__ == '__main__':
    sys.exit(main())
