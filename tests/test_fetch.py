"""posebench.data.fetch against local archives: `file://` URLs and a loopback HTTP server stand in for the dataset
hosts (the resource table is monkeypatched), so nothing here touches the network."""
import dataclasses
import hashlib
import http.server
import io
import json
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from posebench.data import fetch as F

IMS = [f'{i:012d}.jpg' for i in (139, 285, 632, 724)]
MPII_IMS = [f'{i:09d}.jpg' for i in (15601864, 15599452, 5808361)]


def md5(p: Path) -> str: return hashlib.md5(p.read_bytes()).hexdigest()


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob('*') if p.is_file())


@pytest.fixture
def server(tmp_path):
    """Archives shaped like the real ones: COCO zips (with members the table must skip) and MPII tars."""
    srv = tmp_path / 'server'; srv.mkdir()
    with zipfile.ZipFile(srv / 'annotations_trainval2017.zip', 'w') as z:
        for s in ('train', 'val'):
            z.writestr(f'annotations/person_keypoints_{s}2017.json', json.dumps({'images': [{'file_name': n} for n in IMS]}))
        z.writestr('annotations/instances_val2017.json', '{}')
        z.writestr('annotations/captions_val2017.json', '{}')
    with zipfile.ZipFile(srv / 'val2017.zip', 'w') as z:
        z.writestr('val2017/', b'')
        for n in IMS: z.writestr(f'val2017/{n}', f'jpeg bytes of {n}'.encode())
    with tarfile.open(srv / 'mpii_annotations.tar', 'w') as t:  # MMPose's names, at the archive's top level
        recs = [{'image': n, 'joints': [[0, 0]] * 16, 'joints_vis': [1] * 16, 'center': [1, 1], 'scale': 1} for n in MPII_IMS]
        for name, data in {'mpii_train.json': recs[:2], 'mpii_val.json': recs[2:], 'mpii_trainval.json': recs, 'mpii_test.json': []}.items():
            _add(t, name, json.dumps(data).encode())
        _add(t, 'mpii_gt_val.mat', b'MATLAB 5.0 MAT-file')
    with tarfile.open(srv / 'mpii_human_pose_v1.tar.gz', 'w:gz') as t:
        for n in MPII_IMS: _add(t, f'images/{n}', n.encode())
    return srv


def _add(t: tarfile.TarFile, name: str, data: bytes):
    info = tarfile.TarInfo(name); info.size = len(data); t.addfile(info, io.BytesIO(data))


def served(r: F.Resource, srv: Path, **kw) -> F.Resource:
    """`r` downloading from the local archive of the same name, with its real size and md5 unless overridden."""
    p = srv / r.archive
    return dataclasses.replace(r, **{'url': p.as_uri(), 'size': p.stat().st_size, 'md5': md5(p), **kw})


@pytest.fixture
def table(monkeypatch, server):
    ann, val, _, det = F.RESOURCES['coco']
    coco = (served(ann, server), served(val, server, expect=(dataclasses.replace(val.expect[0], count=len(IMS)),)), det)
    mann, mim = F.RESOURCES['mpii']
    mpii = (served(mann, server, size=None, md5=None), served(mim, server, size=None, md5=None))  # like the real MPII entries
    monkeypatch.setitem(F.RESOURCES, 'coco', coco)
    monkeypatch.setitem(F.RESOURCES, 'mpii', mpii)
    return server


def test_fetch_extracts_into_the_layout_and_second_run_skips(table, tmp_path):
    root = tmp_path / 'data'
    rep = F.fetch('coco', root, progress=False)
    assert rep.status == {'annotations': 'fetched', 'val2017': 'fetched', 'detections': 'manual'}
    assert files_under(root) == ['coco/annotations/person_keypoints_train2017.json', 'coco/annotations/person_keypoints_val2017.json',
                                 *(f'coco/val2017/{n}' for n in IMS)]  # instances/captions skipped, archives deleted
    assert (root / 'coco/val2017' / IMS[2]).read_bytes() == f'jpeg bytes of {IMS[2]}'.encode()
    assert not rep.ok and rep.problems['detections'] == [f'missing file coco/person_detection_results/{F._DET}']
    assert 'drive.google.com' in rep.notes['detections'] and str(root) in rep.notes['detections']
    for p in table.iterdir(): p.unlink()  # a second run that tried to download anything would now fail
    again = F.fetch('coco', root, parts=['annotations', 'val2017'], progress=False)
    assert again.status == {'annotations': 'present', 'val2017': 'present'} and again.ok
    assert files_under(root)[-len(IMS):] == [f'coco/val2017/{n}' for n in IMS]


def test_mpii_tars_are_renamed_to_hrnet_layout(table, tmp_path):
    root = tmp_path / 'data'
    rep = F.fetch('mpii', root, keep_archives=True, progress=False)
    assert rep.ok and rep.status == {'annotations': 'fetched', 'images': 'fetched'}
    assert files_under(root / 'mpii/annotations') == ['gt_valid.mat', 'test.json', 'train.json', 'trainval.json', 'valid.json']
    assert [r['image'] for r in json.loads((root / 'mpii/annotations/valid.json').read_text())] == MPII_IMS[2:]
    assert files_under(root / 'mpii/images') == sorted(MPII_IMS)
    assert files_under(root / 'mpii/downloads') == ['mpii_annotations.tar', 'mpii_human_pose_v1.tar.gz']
    (root / 'mpii/images' / MPII_IMS[0]).unlink()
    assert F.check('mpii', root).problems['images'] == [
        f'1 images named in mpii/annotations/train.json, mpii/annotations/valid.json are missing from mpii/images/: {MPII_IMS[0]}']
    rep = F.fetch('mpii', root, progress=False)  # the kept archive is reused: nothing to download
    assert rep.status['images'] == 'fetched' and rep.ok and not (root / 'mpii/downloads/mpii_human_pose_v1.tar.gz').exists()


def test_images_before_their_annotations_cannot_be_verified_but_are_fetched(table, tmp_path):
    rep = F.fetch('mpii', tmp_path, parts=['images'], progress=False)
    assert rep.status == {'images': 'fetched'} and not rep.ok
    assert rep.problems['images'] == ['cannot verify mpii/images/ until mpii/annotations/train.json, mpii/annotations/valid.json are in place']


def test_corrupt_download_fails_clearly_and_leaves_nothing(table, tmp_path, monkeypatch):
    ann, val, det = F.RESOURCES['coco']
    monkeypatch.setitem(F.RESOURCES, 'coco', (ann, dataclasses.replace(val, md5='0' * 32), det))
    with pytest.raises(F.FetchError, match=r'val2017\.zip: md5 [0-9a-f]{32} does not match the expected 0{32}; the corrupt download was deleted'):
        F.fetch('coco', tmp_path / 'data', parts=['val2017'], progress=False)
    assert files_under(tmp_path / 'data') == []
    assert F.cli(['coco', '--root', str(tmp_path / 'data'), '--parts', 'val2017']) == 1


def test_wrong_size_and_wrong_archive(table, tmp_path, monkeypatch):
    ann, val, det = F.RESOURCES['coco']
    monkeypatch.setitem(F.RESOURCES, 'coco', (dataclasses.replace(ann, size=ann.size + 1, md5=None), val, det))
    with pytest.raises(F.FetchError, match=f'got {ann.size} bytes, expected {ann.size + 1}'):
        F.fetch('coco', tmp_path / 'data', parts=['annotations'], progress=False)
    assert files_under(tmp_path / 'data') == []
    # the val2017 zip served for the annotations: it downloads fine but holds none of the members the table wants
    monkeypatch.setitem(F.RESOURCES, 'coco', (dataclasses.replace(ann, url=val.url, size=None, md5=None), val, det))
    with pytest.raises(F.FetchError, match=r"no member matches \['annotations/person_keypoints_\*2017.json'\].*the archive was deleted"):
        F.fetch('coco', tmp_path / 'data', parts=['annotations'], progress=False)
    assert files_under(tmp_path / 'data') == []  # the wrong archive is not kept to fail again


def test_members_cannot_escape_the_root(tmp_path):
    z = tmp_path / 'evil.zip'
    with zipfile.ZipFile(z, 'w') as f:
        f.writestr('../../val2017/escape.jpg', b'x'); f.writestr('val2017/ok.jpg', b'y')
    r = dataclasses.replace(F.RESOURCES['coco'][1], members=(('*.jpg', 'coco/val2017/'),))
    assert F.extract(z, r, tmp_path / 'data', progress=False) == 2
    assert files_under(tmp_path / 'data') == ['coco/val2017/escape.jpg', 'coco/val2017/ok.jpg']
    assert files_under(tmp_path) == ['data/coco/val2017/escape.jpg', 'data/coco/val2017/ok.jpg', 'evil.zip']


def test_check_says_exactly_what_is_missing(tmp_path):
    rep = F.check('coco', tmp_path, parts=['annotations', 'val2017'])
    assert rep.status == {'annotations': 'missing', 'val2017': 'missing'} and not rep.ok
    assert rep.problems == {'annotations': ['missing file coco/annotations/person_keypoints_train2017.json',
                                            'missing file coco/annotations/person_keypoints_val2017.json'],
                            'val2017': ['missing folder coco/val2017/ (*.jpg)']}
    (tmp_path / 'coco/annotations').mkdir(parents=True)
    (tmp_path / 'coco/annotations/person_keypoints_val2017.json').write_text(json.dumps({'images': [{'file_name': n} for n in IMS]}))
    (tmp_path / 'coco/val2017').mkdir()
    (tmp_path / 'coco/val2017' / IMS[1]).write_bytes(b'x')
    val = F.check('coco', tmp_path, parts=['val2017']).problems['val2017']
    assert val == ['coco/val2017/ has 1 *.jpg files, expected 5000',
                   f'3 images named in coco/annotations/person_keypoints_val2017.json are missing from coco/val2017/: {IMS[0]}, {IMS[2]}, {IMS[3]}']
    cp = F.check('crowdpose', tmp_path)
    assert cp.status == {'annotations': 'missing', 'images': 'missing'} and 'Jeff-sjtu/CrowdPose' in cp.notes['images']
    (tmp_path / 'crowdpose/json').mkdir(parents=True)
    for s in ('train', 'val', 'trainval', 'test'): (tmp_path / f'crowdpose/json/crowdpose_{s}.json').write_text('{"images": []}')
    (tmp_path / 'crowdpose/json/crowdpose_test.json').write_text('<html><body>Google Drive - Virus scan warning')
    assert F.check('crowdpose', tmp_path).problems['annotations'] == ['crowdpose/json/crowdpose_test.json is not JSON (an HTML page saved under its name?)']
    with pytest.raises(ValueError, match=r"coco has no part \['val2018'\]"): F.check('coco', tmp_path, parts=['val2018'])
    with pytest.raises(ValueError, match="unknown dataset 'flickr'"): F.check('flickr', tmp_path)


def test_dry_run_downloads_nothing(table, tmp_path, capsys):
    rep = F.fetch('coco', tmp_path / 'data', dry_run=True)
    assert rep.status == {'annotations': 'would fetch', 'val2017': 'would fetch', 'detections': 'manual'}
    assert rep.notes['val2017'].startswith(f'download {(table / "val2017.zip").as_uri()} (')
    assert not (tmp_path / 'data').exists()
    assert F.cli(['fetch', 'mpii', '--root', str(tmp_path / 'data'), '--dry-run']) == 0
    assert not (tmp_path / 'data').exists()
    assert 'would fetch' in capsys.readouterr().out


def test_cli(table, tmp_path, capsys):
    root = str(tmp_path / 'data')
    assert F.cli(['coco', '--root', root, '--check']) == 1
    assert F.cli(['coco', '--root', root, '--parts', 'annotations', 'val2017']) == 0
    assert F.cli(['coco', '--root', root, '--parts', 'annotations', 'val2017', '--check']) == 0
    assert F.cli(['coco', '--root', root]) == 1  # the manual detection file is still missing
    out = capsys.readouterr().out
    assert 'detections   manual' in out and F._DET in out
    assert F.cli(['flickr']) == 2
    assert F.cli(['--help']) == 0


def test_root_defaults_to_data_root(table, tmp_path, monkeypatch):
    monkeypatch.setenv('POSEBENCH_DATA', str(tmp_path / 'elsewhere'))
    assert F.fetch('coco', parts=['annotations'], progress=False).root == tmp_path / 'elsewhere'
    assert (tmp_path / 'elsewhere/coco/annotations/person_keypoints_val2017.json').is_file()


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves `data`, honouring `Range: bytes=N-` when `ranges`; with `cut`, sends only the first `cut` bytes of the body."""
    data, ranges, cut, seen = b'', True, None, []

    def do_GET(self):
        rng = self.headers.get('Range'); type(self).seen.append(rng)
        start = int(rng[len('bytes='):-1]) if rng and self.ranges else 0
        body = self.data[start:]
        self.send_response(206 if start else 200)
        self.send_header('Content-Length', str(len(body))); self.end_headers()
        self.wfile.write(body[:self.cut] if self.cut is not None else body)

    def log_message(self, *a): pass


@pytest.fixture
def http_server():
    srv = http.server.HTTPServer(('127.0.0.1', 0), _RangeHandler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    _RangeHandler.data, _RangeHandler.ranges, _RangeHandler.cut, _RangeHandler.seen = bytes(range(256)) * 400, True, None, []
    yield f'http://127.0.0.1:{srv.server_address[1]}/file.zip'
    srv.shutdown(); srv.server_close()


def test_interrupted_download_resumes(http_server, tmp_path):
    data = _RangeHandler.data; dest = tmp_path / 'file.zip'; part = tmp_path / 'file.zip.part'
    _RangeHandler.cut = 30_000
    with pytest.raises(F.FetchError, match=f'connection closed after 30000 of {len(data)} bytes; .*file.zip.part is kept'):
        F.download(http_server, dest, progress=False)
    assert part.read_bytes() == data[:30_000] and not dest.exists()
    _RangeHandler.cut = None
    F.download(http_server, dest, size=len(data), md5=hashlib.md5(data).hexdigest(), progress=False)
    assert dest.read_bytes() == data and not part.exists()
    assert _RangeHandler.seen == [None, 'bytes=30000-']


def test_server_ignoring_range_restarts(http_server, tmp_path):
    data = _RangeHandler.data; dest = tmp_path / 'file.zip'
    (tmp_path / 'file.zip.part').write_bytes(b'stale bytes of an older file')
    _RangeHandler.ranges = False
    F.download(http_server, dest, md5=hashlib.md5(data).hexdigest(), progress=False)
    assert dest.read_bytes() == data and _RangeHandler.seen == ['bytes=28-']
