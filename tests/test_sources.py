"""The sources as a whole: every module says in one sentence what it is, notebooks import only lower-numbered
notebooks, prose cites papers (not files outside the repository or how the work was organised), and no test hides a
broken posebench module behind `importorskip`."""
import ast
import importlib
import io
import json
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NBS, PKG = ROOT / 'nbs', ROOT / 'posebench'


def _cells(nb: Path) -> list[dict]: return json.loads(nb.read_text(encoding='utf-8'))['cells']


def _src(c: dict) -> str: return ''.join(c['source'])


def _notebook_modules() -> dict[str, tuple[tuple[int, str] | None, str]]:
    "posebench module name -> (notebook number as (int, letter) or None, notebook name), from the `#| default_exp` cells; `24b_` sorts after `24_`."
    mods = {}
    for nb in sorted(NBS.rglob('*.ipynb')):
        if any(p.startswith(('.', '_')) for p in nb.relative_to(NBS).parts): continue
        for c in _cells(nb):
            m = re.match(r'#\|\s*default_exp\s+(\S+)', _src(c))
            if c['cell_type'] == 'code' and m:
                num = re.match(r'(\d+)([a-z]?)_', nb.name)  # fastai's numbering: 24_, 24b_, 24c_, 25_ ...
                mods['posebench.' + m.group(1)] = ((int(num.group(1)), num.group(2)) if num else None, str(nb.relative_to(NBS)))
    return mods


def _module_file(mod: str) -> Path: return ROOT / (mod.replace('.', '/') + '.py')


# ------------------------------------------------------------------------------------------ module docstrings

_SENTENCE = re.compile(r'[A-Z`"\'].*\.')


def test_every_module_docstring_is_one_whole_sentence():
    "nbdev writes each module's docstring from the first `> ` line of its notebook's title cell."
    mods = _notebook_modules()
    assert len(mods) >= 30 and 'posebench.core' in mods
    bad = []
    for mod in mods:
        doc = importlib.import_module(mod).__doc__
        if not doc or '\n' in doc.strip() or not _SENTENCE.fullmatch(doc.strip()):
            bad.append(f'{mod} ({mods[mod][1]}): {doc!r}')
    assert not bad, ('module docstrings that are not one whole sentence on one line (capital letter, backquote or quote '
                     'first, a period last): make the `> ` summary of the title cell one sentence on one line, and put '
                     'the rest in a markdown cell below it:\n' + '\n'.join(bad))


# ------------------------------------------------------------------------------------------ layering

def _posebench_imports(path: Path, mod: str) -> list[tuple[int, str]]:
    "(line, module) for every posebench import in `path`, at any depth (inside functions too); relative ones resolved."
    pkg = mod.rsplit('.', 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split('.')[0] == 'posebench']
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split('.')
                base = base[:len(base) - (node.level - 1)]
                target = '.'.join(base + ([node.module] if node.module else []))
            else: target = node.module or ''
            if target.split('.')[0] != 'posebench': continue
            out.append((node.lineno, target))
            out += [(node.lineno, f'{target}.{a.name}') for a in node.names]  # `from posebench.codecs import refine`
    return out


def _owner(name: str, mods) -> str | None:
    "The exported module `name` lies in (the longest known prefix), or None for a package (`posebench`, `posebench.codecs`)."
    parts = name.split('.')
    return next(('.'.join(parts[:i]) for i in range(len(parts), 1, -1) if '.'.join(parts[:i]) in mods), None)


def test_modules_import_only_lower_numbered_notebooks():
    "Notebook number = import order: a module may import only the modules of lower-numbered notebooks."
    mods = _notebook_modules()
    bad = []
    for mod, (num, nb) in sorted(mods.items()):
        if num is None: continue
        path = _module_file(mod)
        assert path.exists(), f'{nb} exports {mod}, but {path.relative_to(ROOT)} is missing: run nbdev_export'
        for line, name in _posebench_imports(path, mod):
            dep = _owner(name, mods)
            if dep is None or dep == mod: continue
            dnum, dnb = mods[dep]
            if dnum is None or dnum >= num:
                bad.append(f'{path.relative_to(ROOT)}:{line} ({nb}) imports {dep} ({dnb})')
    bad = sorted(set(bad))
    assert not bad, f'{len(bad)} import(s) of a module from a later or equal-numbered notebook:\n' + '\n'.join(bad)


def test_no_module_imports_a_private_name_of_another():
    "A name that starts with `_` belongs to its module: another module that needs it needs a public name."
    mods = _notebook_modules()
    bad = []
    for mod, (num, nb) in sorted(mods.items()):
        path = _module_file(mod)
        if not path.exists(): continue
        for line, name in _posebench_imports(path, mod):
            if '.' not in name: continue  # `import posebench`
            owner, leaf = name.rsplit('.', 1)
            if leaf.startswith('_') and not leaf.startswith('__') and _owner(owner, mods) not in (None, mod):
                bad.append(f'{path.relative_to(ROOT)}:{line} ({nb}) imports the private {leaf} of {owner}')
    assert not bad, f'{len(bad)} import(s) of a private name across modules:\n' + '\n'.join(sorted(set(bad)))


def test_layering_check_resolves_relative_and_nested_imports(tmp_path):
    "The checker itself: relative imports at any depth, `from package import module`, packages ignored."
    mods = {'posebench.codecs.core': (10, 'a'), 'posebench.codecs.refine': (12, 'b'), 'posebench.core': (0, 'c')}
    p = tmp_path / 'gaussian.py'
    p.write_text('from ..core import x\nfrom .refine import Dark\nimport posebench.codecs.core as cc\n'
                 'def f():\n    from posebench.codecs import refine\n    from .. import __version__\n', encoding='utf-8')
    found = {(line, _owner(n, mods)) for line, n in _posebench_imports(p, 'posebench.codecs.gaussian')}
    assert {f for f in found if f[1]} == {(1, 'posebench.core'), (2, 'posebench.codecs.refine'), (3, 'posebench.codecs.core'),
                                          (5, 'posebench.codecs.refine')}


# ------------------------------------------------------------------------------------------ references

# A reference to a file outside the repository, or to how the work was organised, instead of to a paper or the
# original code. `§` is allowed only in a citation of an arXiv paper (on the same line, after "arXiv"/"arxiv.org").
_FORBIDDEN = [
    (re.compile(r'\.\./shared(?!/data)'), "a path outside the repository ('../shared...')"),
    (re.compile(r'shared/specs|\bspecs/|\b\w+_\w+\.md\s*§'), 'a design document outside the repository'),
    (re.compile(r'\bspecs?\b', re.IGNORECASE), "'spec' (cite the paper: arXiv link and section)"),
    (re.compile(r'\bthe issue\b(?!\s+tracker)', re.IGNORECASE), "'the issue'"),
    (re.compile(r'\bissues?\s*#?\d', re.IGNORECASE), "an issue number (link the upstream repository's issue instead)"),
    (re.compile(r'\bthe brief\b|\breference index\b', re.IGNORECASE), 'how the work was organised'),
    (re.compile(r'RECIPES|STYLE\.md'), 'a project-process file'),
]
_SHARED_DATA = re.compile(r'\.\./shared/data')
_SECTION = re.compile(r'§')
# the one place that says where the real data samples live
_DATA_HOME = {NBS / '97_test_utils.ipynb', PKG / 'test_utils.py'}


def _prose_of_code(code: str) -> str:
    "Comments and string literals of Python source (what a reader reads as prose); all of it if it does not tokenize."
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return code
    lines = {}
    for t in toks:
        if t.type in (tokenize.COMMENT, tokenize.STRING) or t.type == getattr(tokenize, 'FSTRING_MIDDLE', -1):
            for k, s in enumerate(t.string.splitlines() or ['']):
                lines.setdefault(t.start[0] + k, []).append(s)
    return '\n'.join(' '.join(v) for _, v in sorted(lines.items()))


def _problems(text: str, where: str, shared_ok: bool) -> list[str]:
    out = []
    for line in text.splitlines():
        why = [w for rx, w in _FORBIDDEN if rx.search(line)]
        if _SHARED_DATA.search(line) and not shared_ok: why.append("'../shared/data' outside code that reads the samples")
        for m in _SECTION.finditer(line):
            if not re.search(r'arxiv', line[:m.start()], re.IGNORECASE): why.append("'§' that is not a section of an arXiv-cited paper")
        if why: out.append(f'{where}: {"; ".join(dict.fromkeys(why))}: {line.strip()[:160]}')
    return out


def _reference_problems() -> list[str]:
    bad = []
    for nb in sorted(NBS.rglob('*.ipynb')):
        if any(p.startswith(('.', '_')) for p in nb.relative_to(NBS).parts): continue
        cells = _cells(nb)
        reads_samples = any('test_utils' in _src(c) or 'shared_data' in _src(c) for c in cells if c['cell_type'] == 'code')
        for i, c in enumerate(cells):
            s, where = _src(c), f'nbs/{nb.relative_to(NBS)} cell {i} ({c["cell_type"]})'
            if c['cell_type'] == 'code':
                bad += _problems(_prose_of_code(s), where, shared_ok=reads_samples or nb in _DATA_HOME)
            else: bad += _problems(s, where, shared_ok=nb in _DATA_HOME)
    for py in sorted(PKG.rglob('*.py')):
        if py.name == '_modidx.py': continue
        bad += _problems(_prose_of_code(py.read_text(encoding='utf-8')), str(py.relative_to(ROOT)), shared_ok=py in _DATA_HOME)
    return bad


def test_references_point_to_papers_not_to_files_outside_the_repository():
    bad = _reference_problems()
    assert not bad, (f'{len(bad)} reference(s) to files outside the repository or to internal process; cite the paper '
                     '(arXiv link, section or equation) or the original code instead:\n' + '\n'.join(bad))


@pytest.mark.parametrize('text, n', [('as in the spec §1.3', 1), ('(../shared/specs/dark.md §1.1)', 1), ('the issue asks', 1),
                                     ('(issue 3, point 6)', 1), ("the issue's goal", 1), ('the brief for this notebook', 1),
                                     ('DARK ([arXiv:1910.06278](https://arxiv.org/abs/1910.06278), §3)', 0),
                                     ('the issue trackers of HRNet', 0), ('[repo#22](https://github.com/a/b/issues/22)', 0),
                                     ('inspect the specimen', 0), ('samples in `../shared/data`', 1)])
def test_reference_check_itself(text, n):
    assert len(_problems(text, 'x', shared_ok=False)) == n


# ------------------------------------------------------------------------------------------ tests

def test_no_test_importorskips_a_posebench_module():
    "A broken posebench module must fail the tests, not skip them."
    bad = []
    for py in sorted((ROOT / 'tests').rglob('*.py')):
        for node in ast.walk(ast.parse(py.read_text(encoding='utf-8'))):
            if (isinstance(node, ast.Call) and getattr(node.func, 'attr', getattr(node.func, 'id', None)) == 'importorskip'
                    and node.args and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).split('.')[0] == 'posebench'):
                bad.append(f'{py.relative_to(ROOT)}:{node.lineno}: importorskip({node.args[0].value!r})')
    assert not bad, 'tests that skip instead of failing when a posebench module does not import (import it):\n' + '\n'.join(bad)


def test_methods_keep_their_qualified_names():
    "A method added to a class outside its body (`posebench.core.patch`) is named `Class.method`, never `_method`."
    import importlib, inspect
    bad = []
    for mod in _notebook_modules():
        m = importlib.import_module(mod)
        for cname, cls in vars(m).items():
            if not inspect.isclass(cls) or cls.__module__ != mod: continue
            for name, v in vars(cls).items():
                f = v.fget if isinstance(v, property) else v.__func__ if isinstance(v, (classmethod, staticmethod)) else v
                owners = tuple(c.__qualname__ + '.' for c in cls.__mro__)  # an alias of a base class's method is fine
                if inspect.isfunction(f) and f.__module__ == mod and not f.__qualname__.startswith(owners) and '<lambda>' not in f.__qualname__:
                    bad.append(f'{mod}.{cname}.{name} is named {f.__qualname__!r}')
    assert not bad, 'methods attached without posebench.core.patch:\n' + '\n'.join(bad)
