"""The codec benchmark run notebook (nbs/runs/codec_benchmark.ipynb), run small through the real `posebench run`
command: its tables are written, agree with metrics.json, and hold the values the library computes."""
import csv
import json
import os
import re

import numpy as np
import pytest

from posebench.codecs.bench import ap_deltas, decoder_suite, delta_cell, keypoint_ap, records_results, topdown_decode, topdown_encode
from posebench.codecs.zoo import DECODERS, published_codecs
from posebench.data.readers import read_coco
from posebench.test_utils import run_notebook

N_BOOT = 50
DCOL = 'ΔAP vs msra + quarter [95% CI]'
CELL = re.compile(r'^([+-]\d+\.\d) \[([+-]\d+\.\d), ([+-]\d+\.\d)\]$')  # format_delta: AP points


def interval(cell):
    "delta, lo, hi of a `+1.2 [+0.3, +2.1]` cell, checked well-formed."
    m = CELL.match(cell)
    assert m, cell
    d, lo, hi = map(float, m.groups())
    assert lo <= d <= hi, cell
    return d, lo, hi


def read_csv(p):
    with open(p) as f: return list(csv.DictReader(f))


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('cb')
    return run_notebook('codec_benchmark', tmp, dict(reps=1, batch='4x17x32x24', synthetic_images=4, sizes='96x128:1', coco_mini=False,
                                                   cost_reps=1, threads=2, n_boot=N_BOOT, synthetic_root=tmp / 'synthetic'))


def test_tables_written(run):
    for n in ('decode_speed_cpu', 'decode_content', 'decode_load', 'encode_throughput', 'roundtrip', 'outside_crop', 'dark_claim',
              'ap_grid_synthetic-val_128x96_s1'):
        assert (run / f'{n}.csv').stat().st_size > 0 and (run / f'{n}.md').read_text().startswith('**'), n
    m = json.loads((run / 'metrics.json').read_text())
    assert m['batch'] == [4, 17, 32, 24] and m['reps'] == 1


def test_speed_table_is_measured(run):
    m = json.loads((run / 'metrics.json').read_text())
    rows = read_csv(run / 'decode_speed_cpu.csv')
    names = [r['name'] for r in rows]
    assert names[0] == 'plain argmax' and {'dark', 'dark_udp', 'integral sihn', 'reference dark'} <= set(names)
    by = {r['name']: float(r['median_ms']) for r in rows}
    assert all(v > 0 for v in by.values())
    assert m['decode_speed_cpu']['dark_over_plain_argmax'] == pytest.approx(by['dark'] / by['plain argmax'], rel=1e-9)
    assert m['decode_speed_cpu']['reference_over_dark'] == pytest.approx(by['reference dark'] / by['dark'], rel=1e-9)
    for r in rows: assert float(r['x_plain_argmax']) == pytest.approx(by[r['name']] / by['plain argmax'], rel=1e-9)
    err = {r['name']: float(r['err_interior']) for r in rows}
    assert err['dark'] < err['quarter'] < err['argmax'] and err['dark'] == pytest.approx(err['reference dark'], abs=1e-3)
    enc = read_csv(run / 'encode_throughput.csv')
    assert [r['encoding'] for r in enc] == ['msra', 'dark', 'udp', 'integral', 'ihl'] and all(float(r['persons_per_s']) > 0 for r in enc)


def alive(pid):
    try: os.kill(pid, 0)
    except ProcessLookupError: return False
    return True


def test_content_and_load_tables(run):
    m = json.loads((run / 'metrics.json').read_text())
    content = read_csv(run / 'decode_content.csv')
    assert [r['name'] for r in content] == list(DECODERS)
    for r in content:
        assert float(r['clean_ms']) > 0 and float(r['x_clean']) == pytest.approx(float(r['absent_ms']) / float(r['clean_ms']), rel=1e-9)
        assert float(r['x_clean_min']) == pytest.approx(float(r['absent_min_ms']) / float(r['clean_min_ms']), rel=1e-9)
        assert float(r['x_clean_cpu']) == pytest.approx(float(r['absent_cpu_ms']) / float(r['clean_cpu_ms']), rel=1e-9)
    assert m['decode_content']['max_x_clean'] == pytest.approx(max(float(r['x_clean']) for r in content), rel=1e-9)
    assert m['decode_content']['max_x_clean_cpu'] == pytest.approx(max(float(r['x_clean_cpu']) for r in content), rel=1e-9)
    rows = read_csv(run / 'decode_load.csv')
    names = ['dark', 'argmax', 'integral', 'codec dark']
    assert [(r['load'], r['mode'], r['name']) for r in rows] == [(l, mo, n) for l in ('idle', 'torch', 'python')
                                                                 for mo in ('default', 'mechanism', 'one') for n in names]
    ms = {(r['load'], r['mode'], r['name']): float(r['median_ms']) for r in rows}
    mins = {(r['load'], r['mode'], r['name']): float(r['min_ms']) for r in rows}
    for r in rows:
        assert float(r['x_one']) == pytest.approx(ms[r['load'], r['mode'], r['name']] / ms[r['load'], 'one', r['name']], rel=1e-6)
        assert float(r['x_idle_one']) == pytest.approx(ms[r['load'], r['mode'], r['name']] / ms['idle', 'one', r['name']], rel=1e-6)
        assert float(r['x_one_min']) == pytest.approx(mins[r['load'], r['mode'], r['name']] / mins[r['load'], 'one', r['name']], rel=1e-6)
    d = m['decode_load']
    assert d['threads'] == 2 and d['load_threads'] == 2 and len(d['rows']) == len(rows) and d['switch_us'] > 0
    pids = {p for r in d['rows'] for p in r['pids']}
    assert {len(r['pids']) for r in d['rows']} == {0, 1, 2} and len(pids) == 3  # one matmul process, two Python loops
    assert not any(alive(p) for p in pids)  # every load process was killed


def test_roundtrip_matches_library(run):
    rows = read_csv(run / 'roundtrip.csv')
    assert {r['encoding'] for r in rows} == {'msra', 'dark', 'udp', 'integral', 'ihl'} and {r['data'] for r in rows} == {'synthetic-val'}
    assert len(rows) == 5 * (len(DECODERS) + 2)  # every decoder of the table and the two integral codecs' read-outs
    sa = read_coco(run.parent.parent / 'synthetic' / 'annotations' / 'person_keypoints_val.json')
    keep = sorted(sa.images)[:4]
    recs = [r for r in sa.records if r.image_id in keep]
    codec = published_codecs((96, 128), 1.)['dark']
    k, s = topdown_decode(topdown_encode(recs, codec), decoder_suite(codec)['dark'])
    ap = keypoint_ap(sa.coco, records_results(recs, k, s), sa.schema.sigmas, img_ids=keep)
    row = next(r for r in rows if r['encoding'] == 'dark' and r['decoder'] == 'dark')
    assert float(row['AP']) == pytest.approx(ap['AP'], abs=1e-9) and float(row['AP75']) == pytest.approx(ap['AP75'], abs=1e-9)
    grid = read_csv(run / 'ap_grid_synthetic-val_128x96_s1.csv')
    assert float(next(g for g in grid if g['encoding'] == 'dark')['dark']) == pytest.approx(ap['AP'], abs=1e-9)
    claim = read_csv(run / 'dark_claim.csv')[0]
    base = next(r for r in rows if r['encoding'] == 'msra' and r['decoder'] == 'quarter')
    assert float(claim['gain']) == pytest.approx(ap['AP'] - float(base['AP']), abs=1e-9)
    crop = read_csv(run / 'outside_crop.csv')[0]
    lab = sum(int((r.vis > 0).sum()) for r in recs)
    assert int(crop['labelled']) == lab and 0 <= int(crop['outside_crop']) < lab
    assert np.isfinite([float(r['err_px']) for r in rows]).all()


def test_delta_intervals(run):
    m = json.loads((run / 'metrics.json').read_text())
    assert m['n_boot'] == N_BOOT and m['seed'] == 0
    rows = read_csv(run / 'roundtrip.csv')
    assert DCOL in rows[0] and DCOL in (run / 'roundtrip.md').read_text() and 'reference row msra + quarter' in (run / 'roundtrip.md').read_text()
    for r in rows:
        if (r['encoding'], r['decoder']) == ('msra', 'quarter'): assert r[DCOL] == 'reference', r
        else:
            d, _, _ = interval(r[DCOL])
            ref = next(b for b in rows if (b['data'], b['input'], b['sigma'], b['encoding'], b['decoder']) == (r['data'], r['input'], r['sigma'], 'msra', 'quarter'))
            assert d == pytest.approx(100 * (float(r['AP']) - float(ref['AP'])), abs=0.051), r  # the delta is the AP difference
    assert sum(r[DCOL] == 'reference' for r in rows) == 1  # one data set, one size
    for r in m['roundtrip']:  # the numbers behind the cells
        if r['dAP'] is not None: assert r['dAP_lo'] <= r['dAP'] <= r['dAP_hi'] and r[DCOL] == delta_cell(dict(delta=r['dAP'], lo=r['dAP_lo'], hi=r['dAP_hi']))
    grid = read_csv(run / 'ap_grid_synthetic-val_128x96_s1.csv')
    by = {(r['encoding'], r['decoder']): r[DCOL] for r in rows}
    assert [g[f'dark: {DCOL}'] for g in grid] == [by[g['encoding'], 'dark'] for g in grid]
    for g in grid: interval(g[f'dark: {DCOL}'])
    (claim,) = read_csv(run / 'dark_claim.csv')
    assert claim[DCOL] == by['dark', 'dark'] and interval(claim[DCOL])[0] == pytest.approx(100 * float(claim['gain']), abs=0.051)
    d, lo, hi = interval(claim['ΔAP vs best msra [95% CI]'])
    assert d == pytest.approx(100 * (float(claim['dark_dark_AP']) - float(claim['best_msra_AP'])), abs=0.051)
    assert claim['best_msra_decoder'] in {r['decoder'] for r in rows} and claim['recovery_resolved'] == str(m['dark_claim'][0]['vs_best_lo'] > 0)


def test_delta_matches_library(run):
    sa = read_coco(run.parent.parent / 'synthetic' / 'annotations' / 'person_keypoints_val.json')
    keep = sorted(sa.images)[:4]
    recs = [r for r in sa.records if r.image_id in keep]
    codecs = published_codecs((96, 128), 1.)
    res = {(en, 'dark' if en == 'dark' else 'quarter'): records_results(recs, *topdown_decode(topdown_encode(recs, codecs[en]),
                                                                                             decoder_suite(codecs[en])['dark' if en == 'dark' else 'quarter']))
           for en in ('msra', 'dark')}
    want = ap_deltas(sa, res, ('msra', 'quarter'), n=N_BOOT, seed=0, img_ids=keep)['dark', 'dark']
    got = next(r for r in json.loads((run / 'metrics.json').read_text())['roundtrip'] if (r['encoding'], r['decoder']) == ('dark', 'dark'))
    assert (got['dAP'], got['dAP_lo'], got['dAP_hi']) == pytest.approx((want['delta'], want['lo'], want['hi']), abs=1e-12)
