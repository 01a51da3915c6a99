"""posebench.predict: poses from a model or bundle on image files, folders and RGB arrays, with whole-image, given or
detection-file boxes; checked against closed forms (a fixed-pose model), a model that reads the pixels (channel
order), the evaluation path (same crops bit for bit, same COCO AP from the written JSON), bad input, and the CLI."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from posebench.codecs.gaussian import dark_heatmap, msra_heatmap
from posebench.core import COCO17, KeypointSchema
from posebench.data.readers import AnnotationError, read_coco, read_detections
from posebench.data.synthetic import ensure_synthetic
from posebench.data.topdown import IMAGENET_MEAN, IMAGENET_STD, TopDownDataset
from posebench.eval.coco import coco_eval
from posebench.eval.topdown import predict_dataset
from posebench.geometry import PIXEL_STD, apply_affine, box_to_cs, flip_points, get_affine, invert_affine
from posebench.models.bundle import load_model, save_model
from posebench.models.zoo import build_model
from posebench.predict import Predictions, image_ids_for, list_images, predict
from posebench.runner import main

CODEC = dark_heatmap((96, 128), (24, 32), 1.)


class FixedPoseModel(nn.Module):
    "The codec's heatmaps of one pose (K, 2) in input px for every crop."
    def __init__(self, codec, pose_in):
        super().__init__()
        enc = codec.encode(np.asarray(pose_in, np.float32), np.full(len(pose_in), 2))
        self.register_buffer('maps', torch.from_numpy(enc.targets)[None])

    def forward(self, x): return self.maps.expand(len(x), -1, -1, -1)


class ChannelReader(nn.Module):
    "Heatmap k = RGB channel k of the crop in [0, 1], resized with corner alignment (= the codec's 'udp' alignment)."
    def __init__(self, size):
        super().__init__()
        self.size = size
        self.register_buffer('mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer('std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x): return F.interpolate(x * self.std + self.mean, size=self.size[::-1], mode='bilinear', align_corners=True)


class LookupModel(nn.Module):
    "Heatmaps of a known pose for each crop it was given (and its mirror), looked up by the crop's bytes."
    def __init__(self, codec, crops, poses, flip_index):
        super().__init__()
        self.table, w, vis = {}, codec.input_size[0], np.full(len(flip_index), 2)
        for x, k in zip(crops, poses):
            self.table[x.numpy().tobytes()] = torch.from_numpy(codec.encode(k, vis).targets)
            self.table[x.flip(-1).numpy().tobytes()] = torch.from_numpy(codec.encode(flip_points(k, w, flip_index), vis).targets)

    def forward(self, x): return torch.stack([self.table[xi.cpu().numpy().tobytes()] for xi in x])


def closed_form(pose_in, box, codec, padding=1.25):
    w, h = codec.input_size
    A = get_affine(*box_to_cs(np.asarray(box, np.float64), w / h, padding, align=codec.align), (w, h), align=codec.align)
    return apply_affine(np.broadcast_to(pose_in, (len(A),) + np.shape(pose_in)), invert_affine(A))


def hm_px(box, codec=CODEC):
    "Image px per heatmap px of each box's crop, (N, 1, 1)."
    return (box_to_cs(np.asarray(box, np.float64), codec.input_size[0] / codec.input_size[1])[1][:, 0] * PIXEL_STD / codec.heatmap_size[0])[:, None, None]


@pytest.fixture(scope='module')
def synth(tmp_path_factory):
    root = ensure_synthetic(tmp_path_factory.mktemp('synthetic'), n_train=2, n_val=8, verbose=False, workers=1)
    ann = read_coco(root / 'annotations' / 'person_keypoints_val.json')
    return root / 'images' / 'val', ann


@pytest.fixture(scope='module')
def pose():
    return np.random.default_rng(1).uniform([8, 8], [88, 120], (17, 2))


def boxes_by_name(ann):
    out = {}
    for r in ann: out.setdefault(Path(r.image).name, []).append(r.bbox.tolist())
    return out


# ---------------------------------------------------------------- sources, ids, boxes

def test_list_images(tmp_path):
    for n in ('b.png', 'a.jpg', 'C.JPEG', 'skip.txt', 'skip.bmp'):
        (tmp_path / n).write_bytes(b'x')
    (tmp_path / 'sub').mkdir()
    arr = np.zeros((4, 5, 3), np.uint8)
    got = list_images([tmp_path, arr])
    assert [Path(g).name for g in got[:3]] == ['C.JPEG', 'a.jpg', 'b.png'] and got[3] is arr
    assert list_images(tmp_path / 'skip.bmp') == [str(tmp_path / 'skip.bmp')]  # a file named explicitly is taken as is
    with pytest.raises(ValueError, match='has no .jpg/.jpeg/.png images'): list_images(tmp_path / 'sub')
    with pytest.raises(FileNotFoundError, match='nothing.png does not exist'): list_images(tmp_path / 'nothing.png')
    with pytest.raises(ValueError, match=r'source\[1\]: an image array must be H×W×3 uint8 RGB, got shape \(4, 5\)'):
        list_images([arr, arr[..., 0]])
    with pytest.raises(TypeError, match='got Tensor'): list_images(torch.zeros(4, 5, 3))


def test_image_ids(tmp_path):
    ims = ['/d/000000000785.jpg', '/d/frame.png', 2]
    assert image_ids_for(ims) == [785, 1, 2]
    assert image_ids_for(ims, ['a', 'b', 'c']) == ['a', 'b', 'c']
    assert image_ids_for(ims, {'000000000785.jpg': 5, '/d/frame.png': 6, 2: 7}) == [5, 6, 7]
    (tmp_path / 'ann.json').write_text(json.dumps({'images': [{'id': 3, 'file_name': 'x/000000000785.jpg'}, {'id': 4, 'file_name': 'frame.png'}]}))
    assert image_ids_for(ims[:2], tmp_path / 'ann.json') == [3, 4]
    with pytest.raises(ValueError, match='1 images are not in'): image_ids_for(ims, tmp_path / 'ann.json')
    with pytest.raises(ValueError, match="key 'nope.png' matches none of the 3 images"): image_ids_for(ims, {'nope.png': 1})
    with pytest.raises(ValueError, match='image id 1 is given to 2 images'): image_ids_for(['/a/1.jpg', '/a/x.jpg'])
    with pytest.raises(ValueError, match='2 images have that file name'): image_ids_for(['/a/x.jpg', '/b/x.jpg'], {'x.jpg': 1})
    with pytest.raises(ValueError, match='2 ids for 3 images'): image_ids_for(ims, [1, 2])


# ---------------------------------------------------------------- geometry against closed forms

def test_fixed_pose_every_source(synth, pose, tmp_path):
    folder, ann = synth
    model, files = FixedPoseModel(CODEC, pose), list_images(folder)
    # one file, the whole image as the box
    one = predict(model, files[0], codec=CODEC, schema=COCO17, flip_test=False)
    W, H = cv2.imread(files[0]).shape[1::-1]
    assert one.box.tolist() == [[0, 0, W, H]] and one.boxes == 'whole image' and one.image_ids == [1]
    assert (np.abs(one.kpts - closed_form(pose, one.box, CODEC)) / hm_px(one.box)).max() < 0.01
    # a folder with a dict of boxes by file name
    by_name = boxes_by_name(ann)
    p_dir = predict(model, folder, codec=CODEC, schema=COCO17, boxes=by_name, flip_test=False)
    assert len(p_dir) == len(ann) and len(p_dir.images) == len(files)
    assert (np.abs(p_dir.kpts - closed_form(pose, p_dir.box, CODEC)) / hm_px(p_dir.box)).max() < 0.01
    # RGB arrays with boxes by index
    arrays = [np.ascontiguousarray(cv2.imread(f)[..., ::-1]) for f in files]
    p_arr = predict(model, arrays, codec=CODEC, schema=COCO17, boxes={i: by_name.get(Path(f).name, []) for i, f in enumerate(files)}, flip_test=False)
    assert p_arr.images == list(range(len(files)))
    np.testing.assert_array_equal(p_arr.kpts, p_dir.kpts)
    # a detection file, matched by the number in the file name
    ids = image_ids_for(files)
    dets = [dict(image_id=i, category_id=1, bbox=b, score=1.) for i, f in zip(ids, files) for b in by_name.get(Path(f).name, [])]
    (tmp_path / 'dets.json').write_text(json.dumps(dets))
    p_det = predict(model, folder, codec=CODEC, schema=COCO17, boxes=tmp_path / 'dets.json', flip_test=False)
    np.testing.assert_array_equal(p_det.kpts, p_dir.kpts)
    np.testing.assert_array_equal(p_det.image_index, p_dir.image_index)
    # an array of boxes for one image
    b = np.array(by_name[Path(files[0]).name])
    p_one = predict(model, files[0], codec=CODEC, schema=COCO17, boxes=b, flip_test=False)
    np.testing.assert_array_equal(p_one.kpts, p_dir.kpts[p_dir.for_image(0)])


def test_pixels_and_channel_order(tmp_path):
    blobs = KeypointSchema('blobs', ('red', 'green', 'blue'), ((0, 1), (1, 2)), (), (.05, .05, .05))
    centres = np.array([[52.3, 40.7], [101.6, 70.2], [80.25, 88.8]])
    yy, xx = np.mgrid[:130, :170]
    rgb = np.round(np.stack([255 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 10. ** 2)) for cx, cy in centres], -1)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / 'blobs.png'), rgb[..., ::-1])
    boxes = np.array([[0, 0, 170, 130], [30, 20, 100, 90], [40, 30, 80, 80.5]])
    reader = ChannelReader(CODEC.heatmap_size)
    p_png = predict(reader, tmp_path / 'blobs.png', codec=CODEC, schema=blobs, boxes=boxes)  # flip test on
    p_rgb = predict(reader, rgb, codec=CODEC, schema=blobs, boxes=boxes)
    err = np.linalg.norm(p_png.kpts - centres, axis=-1) / hm_px(boxes)[..., 0]
    assert err.max() < 0.01, err
    np.testing.assert_array_equal(p_png.kpts, p_rgb.kpts)
    p_bgr = predict(reader, np.ascontiguousarray(rgb[..., ::-1]), codec=CODEC, schema=blobs, boxes=boxes)
    np.testing.assert_allclose(p_bgr.kpts[:, ::-1], p_png.kpts, atol=1e-4)  # red and blue swapped


# ---------------------------------------------------------------- the evaluation path

@pytest.mark.parametrize('codec', [CODEC, msra_heatmap((96, 128), (24, 32), 1.)], ids=['dark', 'msra'])
def test_same_crops_and_ap_as_evaluation(synth, codec, tmp_path):
    folder, ann = synth
    rng = np.random.default_rng(3)
    dets = [dict(image_id=r.image_id, category_id=1, bbox=(r.bbox + rng.normal(0, .05, 4) * r.bbox[[2, 3, 2, 3]]).round(2).tolist(),
                 score=float(rng.uniform(0.05, 1))) for r in ann]
    dets.append(dict(image_id=9999, category_id=1, bbox=[1, 2, 30, 40], score=.9))
    (tmp_path / 'dets.json').write_text(json.dumps(dets))
    ds = TopDownDataset(ann, codec, train=False, boxes=read_detections(tmp_path / 'dets.json'), min_box_score=.2)
    items = [ds[i] for i in range(len(ds))]
    poses = [apply_affine(ann[int(j)].kpts.astype(np.float64), it['meta']['M'].numpy()) + rng.normal(0, 2, (17, 2))
             for j, it in zip(ds.samples.det_index, items)]
    model = LookupModel(codec, [it['image'] for it in items], poses, COCO17.flip_index)  # KeyError unless the crops are identical
    p = predict(model, folder, codec=codec, schema=COCO17, boxes=tmp_path / 'dets.json', min_box_score=.2, batch_size=5)
    ref = predict_dataset(model, ds)['codec']
    assert len(p) == len(ds) and p.skipped['detections of images not in the source'] == 1 and p.skipped['box score below 0.2'] > 0
    for nms in (False, True):
        ours = coco_eval(ann, p.write_coco_json(tmp_path / 'pred.json', nms=nms), boxes='detector')
        theirs = coco_eval(ann, ref.results(ann.schema.sigmas, nms=nms))
        assert {k: ours[k] for k in ('AP', 'AP50', 'AP75', 'AR')} == {k: theirs[k] for k in ('AP', 'AP50', 'AP75', 'AR')}
    assert 0.2 < ours['AP'] < 0.95, ours['AP']
    entry = json.loads((tmp_path / 'pred.json').read_text())[0]
    assert sorted(entry) == ['bbox', 'category_id', 'image_id', 'keypoints', 'score'] and len(entry['keypoints']) == 51


def test_score_is_rescored(synth, pose):
    folder, ann = synth
    p = predict(FixedPoseModel(CODEC, pose), folder, codec=CODEC, schema=COCO17, boxes={0: [[10, 10, 60, 90, .5]]})
    s = p.kpt_scores[0]
    assert p.score[0] == pytest.approx(.5 * s[s > .2].mean())
    res = p.results()
    assert res.steps == ('rescore(kpt_thr=0.2)',) and res.image_id.tolist() == [1]


# ---------------------------------------------------------------- bad input

def test_bad_input(synth, pose, tmp_path):
    folder, ann = synth
    model, f0 = FixedPoseModel(CODEC, pose), list_images(folder)[0]
    kw = dict(codec=CODEC, schema=COCO17)
    (tmp_path / 'bad').mkdir(); (tmp_path / 'empty').mkdir()
    (tmp_path / 'bad' / 'x.png').write_bytes(b'\x89PNG broken')
    with pytest.raises(ValueError, match=f'cannot decode image file {tmp_path / "bad" / "x.png"}'): predict(model, tmp_path / 'bad', **kw)
    with pytest.raises(ValueError, match='has no .jpg/.jpeg/.png images'): predict(model, tmp_path / 'empty', **kw)
    with pytest.raises(ValueError, match=r'box 1 \[1.0, 2.0, 3.0, 0.0\] has a non-positive size'):
        predict(model, f0, boxes=[[0, 0, 5, 5], [1, 2, 3, 0]], **kw)
    with pytest.raises(ValueError, match=r'boxes of .*000000001.jpg: box 0 \[1.0, 2.0, -3.0, 4.0\]'):
        predict(model, folder, boxes={Path(f0).name: [[1, 2, -3, 4]]}, **kw)
    (tmp_path / 'dets.json').write_text(json.dumps([dict(image_id=1, category_id=1, bbox=[1, 2, 0, 4], score=.5)]))
    with pytest.raises(AnnotationError, match='dets.json.*detection #0.*degenerate box'): predict(model, folder, boxes=tmp_path / 'dets.json', **kw)
    with pytest.raises(ValueError, match='an array of boxes is for one image'): predict(model, folder, boxes=[[1, 2, 3, 4]], **kw)
    with pytest.raises(ValueError, match='a bare model needs codec= and schema='): predict(model, f0)
    with pytest.raises(ValueError, match='the model makes 17 heatmaps but the schema'):
        predict(model, f0, codec=CODEC, schema=KeypointSchema('one', ('nose',), (), (), (.1,)))


def test_no_boxes_above_threshold_is_no_person(synth, pose, tmp_path):
    folder, _ = synth
    model, files = FixedPoseModel(CODEC, pose), list_images(folder)
    p = predict(model, files[:3], codec=CODEC, schema=COCO17, boxes={0: [[5, 5, 40, 60, .1]], 1: [[5, 5, 40, 60, .9], [9, 9, 30, 50, .2]]},
                min_box_score=.5)
    assert isinstance(p, Predictions) and len(p) == 1 and p.image_index.tolist() == [1] and p.skipped == {'box score below 0.5': 2}
    assert [len(p.for_image(i)) for i in range(3)] == [0, 1, 0]
    assert p.summary()[0].endswith(': 0 persons') and p.summary()[1].endswith(', best score ' + f'{p.score[0]:.3f}')
    none = predict(model, files[0], codec=CODEC, schema=COCO17, min_box_score=2.)  # the whole-image box scores 1
    assert len(none) == 0 and none.kpts.shape == (0, 17, 2) and none.to_coco() == [] and none.results().kpts.shape == (0, 17, 2)
    assert json.loads(none.write_coco_json(tmp_path / 'none.json').read_text()) == []


def test_default_ids_that_collide(synth, pose):
    folder, _ = synth
    f0 = list_images(folder)[0]  # 000000001.jpg: id 1, like the array at index 1
    p = predict(FixedPoseModel(CODEC, pose), [f0, np.zeros((30, 40, 3), np.uint8)], codec=CODEC, schema=COCO17)
    assert p.image_ids is None and len(p) == 2
    with pytest.raises(ValueError, match='no unique default ids'): p.to_coco()
    assert [e['image_id'] for e in p.to_coco(image_ids=['a', 'b'])] == ['a', 'b']


def test_model_mode_restored(synth):
    folder, _ = synth
    m = ChannelReader((24, 32)).train()
    predict(m, list_images(folder)[0], codec=CODEC, schema=KeypointSchema('rgb', ('r', 'g', 'b'), (), (), (.1,) * 3))
    assert m.training


# ---------------------------------------------------------------- bundles and the command line

@pytest.fixture(scope='module')
def bundle(tmp_path_factory):
    torch.manual_seed(0)
    net = build_model('hrnet_w8_small', n_kpts=17)
    return save_model(tmp_path_factory.mktemp('bundle') / 'w8.pt', net, arch='hrnet_w8_small', codec=CODEC, schema=COCO17), net


def test_bundle_equals_model(synth, bundle):
    folder, _ = synth
    f, net = bundle
    files = list_images(folder)[:2]
    a = predict(f, files, device='cpu')
    b = predict(load_model(f), files, device='cpu')
    c = predict(net.eval(), files, codec=CODEC, schema=COCO17)
    for p in (b, c): np.testing.assert_array_equal(a.kpts, p.kpts); np.testing.assert_array_equal(a.kpt_scores, p.kpt_scores)


def test_cli(synth, bundle, tmp_path, capsys):
    folder, ann = synth
    f = bundle[0]
    dets = [dict(image_id=r.image_id, category_id=1, bbox=r.bbox.tolist(), score=.8) for r in ann]
    (tmp_path / 'dets.json').write_text(json.dumps(dets))
    out = tmp_path / 'out' / 'kp.json'
    assert main(['predict', str(f), str(folder), '--boxes', str(tmp_path / 'dets.json'), '--out', str(out), '--device', 'cpu', '--batch-size', '4']) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    want = predict(f, folder, boxes=tmp_path / 'dets.json', device='cpu').to_coco()
    assert json.loads(out.read_text()) == json.loads(json.dumps(want)) and len(want) == len(ann)
    assert len(lines) == len(list_images(folder)) + 1 and lines[0].startswith('000000001.jpg (id 1): ')
    assert lines[-1] == f'posebench predict: {len(ann)} persons in {len(list_images(folder))} images (boxes: detections dets.json) -> {out}'
    # no flip test, quiet, whole images, OKS-NMS: other keypoints, one line
    assert main(['predict', str(f), str(folder), '--out', str(tmp_path / 'noflip.json'), '--no-flip', '-q', '--nms', '--device', 'cpu']) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and 'boxes: whole image' in lines[0]
    noflip = json.loads((tmp_path / 'noflip.json').read_text())
    assert len(noflip) == len(list_images(folder)) and all(len(e['keypoints']) == 51 for e in noflip)
    # errors: one line on stderr, status 1
    (tmp_path / 'bad').mkdir(); (tmp_path / 'bad' / 'a.jpg').write_bytes(b'nope')
    assert main(['predict', str(f), str(tmp_path / 'bad'), '--out', str(tmp_path / 'x.json')]) == 1
    assert f'posebench predict: error: cannot decode image file {tmp_path / "bad" / "a.jpg"}' in capsys.readouterr().err
    assert main(['predict', str(tmp_path / 'dets.json'), str(folder), '--out', str(tmp_path / 'x.json')]) == 1
    assert 'dets.json: not a PyTorch checkpoint' in capsys.readouterr().err
    assert not (tmp_path / 'x.json').exists()
    with pytest.raises(SystemExit): main(['predict', '--help'])
    assert '--min-box-score' in capsys.readouterr().out
