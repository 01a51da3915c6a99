"""Sphinx configuration of the docs site. Build it with `python tools/docs.py build` (it writes the sources to
_build/src from the executed notebooks and runs sphinx-build with `-c docs`); nothing here fetches anything."""
from configparser import ConfigParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_cfg = ConfigParser(delimiters=['='])
_cfg.read(ROOT / 'settings.ini', encoding='utf-8')
_cfg = _cfg['DEFAULT']

project = _cfg['title']
author = _cfg['author']
copyright = _cfg['copyright']
release = version = _cfg['version']

extensions = ['myst_nb']
nb_execution_mode = 'off'  # outputs come from tools/docs.py's execution of the notebooks
nb_merge_streams = True
myst_enable_extensions = ['colon_fence', 'dollarmath']
# plotly: prefer the HTML loader over the JSON bundle myst-nb cannot render
nb_mime_priority_overrides = [('html', 'application/vnd.plotly.v1+json', None)]
exclude_patterns = ['**.ipynb_checkpoints', 'jupyter_execute']
suppress_warnings = ['mystnb.unknown_mime_type',  # application/vnd.plotly.v1+json, widget views
                     'myst.header']  # show_doc emits ### headings under the page title

html_theme = 'pydata_sphinx_theme'
html_title = project
html_copy_source = False  # don't ship the .ipynb sources
html_show_sourcelink = False
html_static_path = ['_static', str(ROOT / '_build' / 'static')]  # the latter: plotly.min.js, copied from the plotly wheel
html_js_files = ['plotly.min.js']  # loaded in <head>, before any figure's Plotly.newPlot
html_css_files = ['posebench.css']
html_theme_options = {
    'navbar_align': 'left',
    'header_links_before_dropdown': 6,
    'show_toc_level': 2,
    'navigation_with_keys': False,
    'use_edit_page_button': False,
    'footer_start': ['copyright'],
    'footer_end': ['sphinx-version', 'theme-version'],
    'secondary_sidebar_items': ['page-toc'],
}
html_context = {'default_mode': 'light'}
