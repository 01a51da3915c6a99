"""Readers (posebench.data.readers): real samples from ../shared/data, and broken files written here, one per error kind."""
import copy
import json
import warnings

import numpy as np
import pytest
from PIL import Image

from posebench.core import COCO17, CROWDPOSE14, MPII16, schema_to_coco_category
from posebench.data.readers import (AnnotationError, AnnotationWarning, PoseAnnotations, clip_bbox, read_annotations,
                                    read_coco, read_crowdpose, read_detections, read_mpii)


def check_report(ann):
    r = ann.report
    assert r.n_read == r.n_kept + r.n_skipped
    assert r.n_kept == len(ann)


# ---------------------------------------------------------------- real samples

def test_coco_sample(shared):
    f = shared / 'samples/coco/test_coco.json'
    raw = json.loads(f.read_text())
    ann = read_coco(f)
    check_report(ann)
    assert isinstance(ann, PoseAnnotations) and ann.schema is COCO17 and ann.format == 'coco'
    # persons with at least one labelled keypoint, counted from the raw JSON
    expected = [a['id'] for a in raw['annotations'] if not a['iscrowd'] and any(v > 0 for v in a['keypoints'][2::3])]
    assert [r.ann_id for r in ann] == expected
    assert ann.report.skipped['no labelled keypoints'] == sum(a['num_keypoints'] == 0 for a in raw['annotations'])
    assert set(ann.images) == {im['id'] for im in raw['images']}
    for a in raw['annotations']:
        if a['id'] not in expected: continue
        r = next(r for r in ann if r.ann_id == a['id'])
        k = np.array(a['keypoints'], float).reshape(17, 3)
        np.testing.assert_array_equal(r.vis, k[:, 2])
        np.testing.assert_array_equal(r.kpts[k[:, 2] > 0], k[k[:, 2] > 0, :2])
        assert r.n_labelled == a['num_keypoints']
        np.testing.assert_allclose(r.bbox, a['bbox'], atol=1e-4)
        assert r.image == shared / 'samples/coco' / f'{a["image_id"]:012d}.jpg' and r.image.is_file()
    # nose of the first person, as written in the file
    a0 = raw['annotations'][0]
    assert ann[0].kpts[COCO17.index('nose')].tolist() == a0['keypoints'][:2]
    # the COCO object keeps all person annotations (keypoint-less ones are needed by COCOeval)
    assert sorted(ann.coco.getAnnIds()) == sorted(a['id'] for a in raw['annotations'])
    assert ann.kpts.shape == (len(expected), 17, 2) and ann.vis.dtype == np.uint8


def test_coco_mini(shared):
    for split, n_people in (('train2017', 86), ('val2017', 68)):  # the counts in ../shared/data/README.md
        f = shared / 'coco-mini/annotations' / f'person_keypoints_{split}.json'
        raw = json.loads(f.read_text())
        ann = read_coco(f)  # images found in coco-mini/<split>/ from the file name
        check_report(ann)
        assert len(ann) == n_people == sum(a['num_keypoints'] > 0 and not a['iscrowd'] for a in raw['annotations'])
        assert ann.report.skipped['crowd'] == sum(a['iscrowd'] for a in raw['annotations'])
        assert all(im.path.parent == shared / 'coco-mini' / split and im.path.is_file() for im in ann.images.values())
        assert len(ann.images) == len(raw['images'])
        assert not any('bbox_raw' in r.extra for r in ann)  # COCO's boxes lie inside their images


def test_crowdpose_sample(shared):
    f = shared / 'samples/crowdpose/test_crowdpose.json'
    raw = json.loads(f.read_text())
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # the invalid categories skeleton is a note, not a warning or an error
        cp = read_crowdpose(f)
    check_report(cp)
    assert cp.schema is CROWDPOSE14 and cp.format == 'crowdpose'
    assert len(cp) == sum(any(v > 0 for v in a['keypoints'][2::3]) for a in raw['annotations'])
    assert {i: im.extra['crowdIndex'] for i, im in cp.images.items()} == {im['id']: im['crowdIndex'] for im in raw['images']}
    assert any('not a valid schema' in n for n in cp.report.notes)
    a = raw['annotations'][-1]
    r = next(r for r in cp if r.ann_id == a['id'])
    neck = CROWDPOSE14.index('neck')
    assert r.kpts[neck].tolist() == a['keypoints'][3 * neck:3 * neck + 2] and r.vis[neck] == a['keypoints'][3 * neck + 2]
    assert r.area == pytest.approx(a['bbox'][2] * a['bbox'][3], rel=1e-6)
    # read as plain COCO, the file's own categories record is rejected with a clear error
    with pytest.raises(AnnotationError, match=r"test_crowdpose.json: category id=1 \('person'\): field 'keypoints': .*outside 1..14"):
        read_coco(f)


def test_mpii_sample(shared):
    f = shared / 'samples/mpii/test_mpii.json'
    raw = json.loads(f.read_text())
    mp = read_mpii(f)
    check_report(mp)
    assert len(mp) == len(raw) and mp.schema is MPII16
    for a, r in zip(raw, mp):
        jv, j = np.array(a['joints_vis']), np.array(a['joints'])
        np.testing.assert_array_equal(r.vis, np.where(jv > 0, 2, 0))
        np.testing.assert_allclose(r.kpts[jv > 0], j[jv > 0] - 1, atol=1e-4)  # 1-based -> 0-based
        assert (r.kpts[jv == 0] == 0).all()
        np.testing.assert_allclose(r.centre, np.array(a['center']) - 1, atol=1e-4)
        np.testing.assert_allclose(r.scale, [a['scale'], a['scale']], rtol=1e-6)
        assert (r.width, r.height) == Image.open(r.image).size
        assert r.image_id == int(a['image'].split('.')[0]) and r.bbox is None
    assert any((np.array(a['joints_vis']) == 0).any() for a in raw)  # the sample has unlabelled joints to test


def test_detections_sample(shared):
    gt = read_coco(shared / 'samples/coco/test_coco.json')
    f = shared / 'samples/coco/test_coco_det_AP_H_56.json'
    raw = json.loads(f.read_text())
    det = read_detections(f, gt)
    assert len(det) == len(raw) and det.report.n_read == len(raw)
    np.testing.assert_allclose(det.bbox, [e['bbox'] for e in raw], rtol=1e-6)
    np.testing.assert_allclose(det.score, [e['score'] for e in raw], rtol=1e-6)
    thr = float(np.median([e['score'] for e in raw]))
    det_hi = read_detections(f, gt, min_score=thr)
    assert len(det_hi) == sum(e['score'] >= thr for e in raw)
    assert det_hi.report.skipped[f'score below {thr:g}'] == len(raw) - len(det_hi)
    assert len(det.for_image(785)) == sum(e['image_id'] == 785 for e in raw)


def test_read_annotations(shared):
    assert len(read_annotations(shared / 'samples/mpii/test_mpii.json', 'mpii')) == 5
    assert read_annotations(shared / 'samples/crowdpose/test_crowdpose.json', 'crowdpose').schema is CROWDPOSE14
    with pytest.raises(ValueError, match="unknown annotation format 'coco-wb'"):
        read_annotations('x.json', 'coco-wb')


# ---------------------------------------------------------------- generated files

def kp(x0):
    return sum(([x0 + 3 * k, 10 + 2 * k, 2] for k in range(17)), [])


@pytest.fixture
def toy(tmp_path):
    "A tiny valid COCO keypoint file (2 images, 3 persons, one without keypoints) and empty image placeholders."
    for n in ('a.jpg', 'b.jpg'): (tmp_path / n).touch()
    d = dict(images=[dict(id=1, file_name='a.jpg', width=100, height=80), dict(id=2, file_name='b.jpg', width=60, height=60)],
             annotations=[dict(id=10, image_id=1, category_id=1, keypoints=kp(5), bbox=[2, 5, 60, 50], area=900., iscrowd=0),
                          dict(id=11, image_id=1, category_id=1, keypoints=[0] * 51, bbox=[50, 5, 20, 30], area=300., iscrowd=0),
                          dict(id=12, image_id=2, category_id=1, keypoints=kp(1), bbox=[0, 0, 55, 50], area=800., iscrowd=0)],
             categories=[schema_to_coco_category(COCO17)])
    return tmp_path, d


def write(tmp, d, name='bad.json'):
    (tmp / name).write_text(json.dumps(d))
    return tmp / name


def test_toy_good(toy):
    tmp, d = toy
    ann = read_coco(write(tmp, d, 'good.json'))
    check_report(ann)
    assert [r.ann_id for r in ann] == [10, 12]
    assert str(ann.report) == 'read 3 annotations from good.json: kept 2 persons; skipped 1: 1 no labelled keypoints'
    assert ann[0].kpts[3].tolist() == [14, 16] and ann[1].image == tmp / 'b.jpg'


def ann_set(i, k, v): return lambda d: d['annotations'][i].__setitem__(k, v)
def ann_del(i, k): return lambda d: d['annotations'][i].pop(k)


COCO_CASES = [  # (id, change, record, field, message fragment, reason)
    ('kpt-count', ann_set(0, 'keypoints', [0] * 48), 'annotation id=10 (image_id=1)', 'keypoints', 'expected 51 values (17 keypoints x 3), got 48', 'wrong keypoint count'),
    ('kpt-nested', ann_set(0, 'keypoints', [[1, 2, 2]] * 17), 'annotation id=10 (image_id=1)', 'keypoints', 'expected 51 values (17 keypoints x 3), got shape (17, 3)', 'wrong keypoint count'),
    ('kpt-str', ann_set(0, 'keypoints', ['5'] + kp(5)[1:]), 'annotation id=10 (image_id=1)', 'keypoints', 'non-numeric value', 'non-numeric value'),
    ('kpt-null', ann_set(2, 'keypoints', kp(1)[:-1] + [None]), 'annotation id=12 (image_id=2)', 'keypoints', 'non-numeric value', 'non-numeric value'),
    ('kpt-nan', ann_set(0, 'keypoints', [float('nan')] + kp(5)[1:]), 'annotation id=10 (image_id=1)', 'keypoints', 'non-finite value nan at position 0', 'non-numeric value'),
    ('kpt-missing', ann_del(0, 'keypoints'), 'annotation id=10 (image_id=1)', 'keypoints', 'missing', "missing 'keypoints'"),
    ('vis-flag', ann_set(0, 'keypoints', kp(5)[:-1] + [3]), 'annotation id=10 (image_id=1)', 'keypoints', 'visibility flag of keypoint 16 (right_ankle) is 3', 'bad visibility flag'),
    ('bbox-missing', ann_del(0, 'bbox'), 'annotation id=10 (image_id=1)', 'bbox', 'missing', 'missing bbox'),
    ('bbox-short', ann_set(0, 'bbox', [2, 5, 60]), 'annotation id=10 (image_id=1)', 'bbox', 'expected 4 values [x, y, w, h]', 'degenerate bbox'),
    ('bbox-str', ann_set(0, 'bbox', [2, 5, '60', 50]), 'annotation id=10 (image_id=1)', 'bbox', 'non-numeric value', 'non-numeric value'),
    ('bbox-zero-w', ann_set(0, 'bbox', [2, 5, 0, 50]), 'annotation id=10 (image_id=1)', 'bbox', 'degenerate box [2.0, 5.0, 0.0, 50.0]', 'degenerate bbox'),
    ('bbox-neg-h', ann_set(2, 'bbox', [2, 5, 10, -1]), 'annotation id=12 (image_id=2)', 'bbox', 'width and height must be > 0', 'degenerate bbox'),
    ('bbox-outside', ann_set(2, 'bbox', [70, 0, 10, 10]), 'annotation id=12 (image_id=2)', 'bbox', 'nothing left of box [70.0, 0.0, 10.0, 10.0] after clipping to the 60x60 image', 'degenerate bbox'),
    ('area-zero', ann_set(0, 'area', 0), 'annotation id=10 (image_id=1)', 'area', 'must be a positive number', 'degenerate area'),
    ('area-missing', ann_del(0, 'area'), 'annotation id=10 (image_id=1)', 'area', 'missing', "missing 'area'"),
    ('iscrowd', ann_set(0, 'iscrowd', 'no'), 'annotation id=10 (image_id=1)', 'iscrowd', 'must be 0 or 1', 'bad iscrowd flag'),
    ('image-id', ann_set(0, 'image_id', 99), 'annotation id=10 (image_id=99)', 'image_id', 'no image with id 99 in the file', 'unknown image_id'),
    ('dup-id', ann_set(2, 'id', 10), 'annotation id=10 (image_id=2)', 'id', 'duplicate annotation id 10', 'duplicate id'),
    ('no-id', ann_del(2, 'id'), 'annotation #2 (image_id=2)', 'id', 'missing', "missing 'id'"),
    ('image-file', lambda d: d['images'][1].__setitem__('file_name', 'gone.jpg'), 'image id=2', 'file_name', 'gone.jpg does not exist', 'missing image file'),
    ('image-size', lambda d: d['images'][1].__setitem__('height', 0), 'image id=2', 'height', 'must be a positive number', 'bad image size'),
]


@pytest.mark.parametrize('change,record,field,msg,reason', [c[1:] for c in COCO_CASES], ids=[c[0] for c in COCO_CASES])
def test_coco_errors(toy, change, record, field, msg, reason):
    tmp, d = toy
    d = copy.deepcopy(d); change(d)
    f = write(tmp, d)
    with pytest.raises(AnnotationError) as ei:
        read_coco(f)
    e = ei.value
    assert str(e).startswith(f"bad.json: {record}: field '{field}': ") and msg in str(e), str(e)
    assert (e.file, e.record, e.field, e.reason) == (f, record, field, reason)
    # errors='skip': the record is counted under its reason, with a warning; the rest is read
    with pytest.warns(AnnotationWarning, match=reason):
        ann = read_coco(f, errors='skip')
    check_report(ann)
    assert ann.report.malformed == {reason} and ann.report.skipped[reason] == 1
    assert ann.report.skipped['no labelled keypoints'] == 1 and len(ann) == 1
    if record.startswith('image'):  # a skipped image takes its annotation with it, and is counted itself
        assert ann.report.images_skipped[reason] == 1 and 2 not in ann.images
    assert set(ann.coco.getAnnIds()) | {r.ann_id for r in ann} <= {10, 11, 12}  # the malformed record is not in COCO either
    assert len(ann.coco.getAnnIds()) == 2


def test_coco_file_errors(toy):
    tmp, d = toy
    text = json.dumps(d)
    cut = text.index('"annotations": [') + len('"annotations": [')
    (tmp / 'trunc.json').write_text(text[:cut])
    with pytest.raises(AnnotationError, match=rf'trunc.json: invalid JSON at line 1 column {cut + 1} \(char {cut}\)'):
        read_coco(tmp / 'trunc.json', errors='skip')  # a file-level error is not skippable
    for k in ('images', 'annotations', 'categories'):
        with pytest.raises(AnnotationError, match=rf"bad.json: missing top-level key\(s\) \['{k}'\]"):
            read_coco(write(tmp, {kk: v for kk, v in d.items() if kk != k}))
    with pytest.raises(AnnotationError, match="bad.json: field 'annotations': top-level 'annotations' must be a list"):
        read_coco(write(tmp, {**d, 'annotations': {}}))
    with pytest.raises(AnnotationError, match='bad.json: expected a JSON object'):
        read_coco(write(tmp, [1, 2]))
    with pytest.raises(FileNotFoundError, match='nothere.json does not exist'):
        read_coco(tmp / 'nothere.json')
    with pytest.raises(ValueError, match="errors must be 'raise' or 'skip'"):
        read_coco(write(tmp, d), errors='warn')
    with pytest.raises(AnnotationError, match="field 'keypoints': 17 keypoint names, but schema mpii16 has 16"):
        read_coco(write(tmp, d), schema=MPII16)
    paw = {**d, 'categories': [dict(id=1, name='paw', keypoints=[f'p{i}' for i in range(17)], skeleton=[])]}
    with pytest.raises(AnnotationError, match=r"category id=1 \('paw'\): field 'keypoints': no OKS sigma known"):
        read_coco(write(tmp, paw))
    assert read_coco(write(tmp, paw), schema=COCO17).report.notes  # names differ from the schema's: noted


def test_coco_policy(toy):
    tmp, d = toy
    d['annotations'][0]['iscrowd'] = 1
    d['annotations'].append(dict(id=20, image_id=1, category_id=3, bbox=[1, 1, 5, 5], area=25, iscrowd=0))
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # policy skips are counted, not warned about
        ann = read_coco(write(tmp, d))
    check_report(ann)
    assert dict(ann.report.skipped) == {'crowd': 1, 'no labelled keypoints': 1, 'other category': 1}
    assert ann.report.examples == {'crowd': [10], 'no labelled keypoints': [11], 'other category': [20]}
    assert ann.coco.getAnnIds() == [10, 11, 12]  # crowd and keypoint-less persons stay for evaluation; the car does not
    assert not ann.report.malformed
    r = read_coco(write(tmp, d), min_kpts=0).report  # min_kpts=0 keeps keypoint-less persons
    assert r.n_kept == 2 and 'crowd' in r.skipped
    part = copy.deepcopy(d['annotations'][2]); part.update(id=13, keypoints=kp(1)[:15 * 3] + [0] * 6)
    d['annotations'].append(part)
    assert read_coco(write(tmp, d), min_kpts=16).report.skipped['fewer than 16 labelled keypoints'] == 2


def test_img_dir(toy):
    tmp, d = toy
    (tmp / 'annotations').mkdir(); (tmp / 'val2017').mkdir()
    for n in ('a.jpg', 'b.jpg'): (tmp / n).rename(tmp / 'val2017' / n)
    f = write(tmp / 'annotations', d, 'person_keypoints_val2017.json')
    assert read_coco(f).images[1].path == tmp / 'val2017' / 'a.jpg'  # COCO layout found
    with pytest.raises(AnnotationError, match="image id=1: field 'file_name': image file .*elsewhere/a.jpg does not exist"):
        read_coco(f, img_dir=tmp / 'elsewhere')
    assert len(read_coco(f, img_dir=tmp / 'elsewhere', check_images=False)) == 2


def test_crowdpose_generated(tmp_path):
    (tmp_path / '7.jpg').touch()
    cat = schema_to_coco_category(CROWDPOSE14); cat['skeleton'] = schema_to_coco_category(COCO17)['skeleton']
    k = sum(([10 + k, 20, 2 - k % 2] for k in range(14)), [])
    d = dict(images=[dict(id=7, file_name='7.jpg', width=50, height=40, crowdIndex=0.5)], categories=[cat],
             annotations=[dict(id=1, image_id=7, category_id=1, keypoints=k, bbox=[-4, 2, 30, 30], iscrowd=0, num_keypoints=14)])
    cp = read_crowdpose(write(tmp_path, d))
    r = cp[0]
    assert r.bbox.tolist() == [0, 2, 26, 30] and r.extra['bbox_raw'].tolist() == [-4, 2, 30, 30]  # clipped, not shifted
    assert r.area == 900 and r.extra['area_from_bbox'] and cp.images[7].extra == {'crowdIndex': 0.5}
    assert r.vis.tolist() == [2, 1] * 7
    d['annotations'][0]['keypoints'] = k[:-3]
    with pytest.raises(AnnotationError, match=r"bad.json: annotation id=1 \(image_id=7\): field 'keypoints': expected 42 values \(14 keypoints x 3\), got 39"):
        read_crowdpose(write(tmp_path, d))


@pytest.fixture
def mpii(tmp_path):
    Image.new('RGB', (40, 30)).save(tmp_path / '000000007.png')
    person = dict(image='000000007.png', joints=[[k + 1., 2. * k + 1] for k in range(16)], joints_vis=[1] * 16, center=[20., 15.], scale=0.2)
    return tmp_path, person


def test_mpii_generated(mpii):
    tmp, person = mpii
    unl = {**person, 'joints': [[-1., -1.], [0., 0.]] + person['joints'][2:], 'joints_vis': [0, 1] + [1] * 14}
    mp = read_mpii(write(tmp, [person, unl, {**person, 'joints_vis': [0] * 16}]))
    check_report(mp)
    assert mp[0].kpts[:, 0].tolist() == list(range(16)) and mp[0].kpts[:, 1].tolist() == [2 * k for k in range(16)]
    assert mp[0].centre.tolist() == [19, 14] and (mp[0].width, mp[0].height, mp[0].image_id) == (40, 30, 7)
    assert mp[1].vis[:2].tolist() == [0, 0] and (mp[1].kpts[:2] == 0).all()  # (0, 0) with flag 1 is read as unlabelled
    assert '1 joints flagged labelled' in mp.report.notes[0]
    assert mp.report.skipped == {'no labelled keypoints': 1} and list(mp.images) == [7]


MPII_CASES = [  # (id, change, field, message fragment, reason)
    ('joints-count', {'joints': [[1., 1.]] * 15}, 'joints', 'expected 16 joints x 2 (x, y), got shape (15, 2)', 'wrong keypoint count'),
    ('joints-str', {'joints': [['1', 1.]] * 16}, 'joints', 'non-numeric value', 'non-numeric value'),
    ('joints-missing', {'joints': None}, 'joints', 'missing', "missing 'joints'"),
    ('vis-count', {'joints_vis': [1] * 17}, 'joints_vis', 'expected 16 flags, got shape (17,)', 'wrong keypoint count'),
    ('vis-flag', {'joints_vis': [1] * 15 + [2]}, 'joints_vis', 'flag of joint 15 (l_wrist) is 2, not 0 or 1', 'bad visibility flag'),
    ('center', {'center': [1.]}, 'center', 'expected 2 values (x, y)', 'bad centre'),
    ('center-inf', {'center': [1., float('inf')]}, 'center', 'non-finite value inf at position 1', 'non-numeric value'),
    ('scale', {'scale': -1}, 'scale', 'must be one positive number, got -1', 'degenerate scale'),
    ('image', {'image': 'gone.png'}, 'image', 'gone.png does not exist', 'missing image file'),
]


@pytest.mark.parametrize('change,field,msg,reason', [c[1:] for c in MPII_CASES], ids=[c[0] for c in MPII_CASES])
def test_mpii_errors(mpii, change, field, msg, reason):
    tmp, person = mpii
    f = write(tmp, [person, {**person, **change}])
    with pytest.raises(AnnotationError) as ei:
        read_mpii(f)
    e = ei.value
    img = change.get('image', person['image'])
    assert str(e).startswith(f"bad.json: record #1 (image={img!r}): field '{field}': ") and msg in str(e), str(e)
    assert (e.record, e.field, e.reason) == (f'record #1 (image={img!r})', field, reason)
    with pytest.warns(AnnotationWarning, match=reason):
        mp = read_mpii(f, errors='skip')
    check_report(mp)
    assert mp.report.skipped == {reason: 1} and mp.report.examples[reason] == [1] and len(mp) == 1


def test_mpii_layout(mpii, toy):
    tmp, _ = toy
    with pytest.raises(AnnotationError, match=r"good.json: expected a JSON list of persons \['image', 'joints'"):
        read_mpii(write(tmp, toy[1], 'good.json'))


def test_detection_errors(toy):
    tmp, d = toy
    gt = read_coco(write(tmp, d, 'good.json'))
    det = [dict(image_id=1, category_id=1, bbox=[1, 2, 30, 40], score=.9), dict(image_id=2, category_id=1, bbox=[1, 2, 30, 40], score=.2),
           dict(image_id=2, category_id=2, bbox=[1, 2, 3, 4], score=.9)]
    dets = read_detections(write(tmp, det, 'det.json'), gt, min_score=0.5)
    assert dets.image_id.tolist() == [1] and dets.report.skipped == {'score below 0.5': 1, 'other category': 1}
    for i, change, field, msg, reason in [
            (1, {'image_id': 5}, 'image_id', 'no image with id 5 in the annotations', 'unknown image_id'),
            (0, {'bbox': [1, 2, 0, 4]}, 'bbox', 'degenerate box', 'degenerate bbox'),
            (0, {'bbox': [1, 2, 3]}, 'bbox', 'expected 4 values', 'degenerate bbox'),
            (2, {'score': 'high'}, 'score', 'non-numeric value', 'non-numeric value'),
            (1, {'score': None}, 'score', 'missing', "missing 'score'")]:
        bad = copy.deepcopy(det); bad[i].update(change)
        if change.get('score', 0) is None: bad[i].pop('score')
        f = write(tmp, bad, 'det.json')
        with pytest.raises(AnnotationError) as ei:
            read_detections(f, gt)
        iid = bad[i]['image_id']
        assert str(ei.value).startswith(f"det.json: detection #{i} (image_id={iid}): field '{field}': ") and msg in str(ei.value), str(ei.value)
        with pytest.warns(AnnotationWarning, match=reason):
            r = read_detections(f, gt, errors='skip').report
        assert r.skipped[reason] == 1 and r.n_read == r.n_kept + r.n_skipped
    assert len(read_detections(write(tmp, [], 'det.json'))) == 0


def test_clip_bbox():
    b, ok = clip_bbox(np.array([[10.5, 20, 100, 50], [-10, -5, 100, 50], [600, 400, 100, 50], [700, 10, 20, 20], [-30, 0, 20, 10]]), (640, 425))
    assert b[0].tolist() == [10.5, 20, 100, 50] and b[1].tolist() == [0, 0, 90, 45] and b[2].tolist() == [600, 400, 40, 25]
    assert ok.tolist() == [True, True, True, False, False]
