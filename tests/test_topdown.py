"""posebench.data.topdown: crops, seeded augmentation independent of the worker count, the way back to image
pixels (flips included), fail-fast batch checks, detector boxes, and real COCO/MPII samples."""
from copy import deepcopy

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from posebench.codecs.gaussian import dark_heatmap, msra_heatmap, udp_heatmap
from posebench.codecs.integral import IntegralHeatmap
from posebench.core import COCO17, MPII16
from posebench.data.readers import read_coco, read_detections, read_mpii
from posebench.data.synthetic import ensure_synthetic
from posebench.data.topdown import (MIN_CROP_PX, Augment, BatchError, TopDownDataset, check_batch, denormalise, half_body_cs,
                                    kpts_to_image, loader_timing, sample_rng)
from posebench.geometry import apply_affine, box_to_cs, get_affine, warp_image

SIZE, HM = (96, 128), (24, 32)  # (w, h) input and heatmap of the CPU-sized runs


@pytest.fixture(scope='module')
def ann(tmp_path_factory):
    root = ensure_synthetic(tmp_path_factory.mktemp('synthetic'), n_train=64, n_val=16, verbose=False)
    return read_coco(root / 'annotations' / 'person_keypoints_train.json')


@pytest.fixture(scope='module')
def codec():
    return udp_heatmap(SIZE, HM)


def batch(ds, n, start=0):
    return default_collate([ds[i] for i in range(start, start + n)])


def test_sample_is_the_box_crop(ann, codec):
    ds = TopDownDataset(ann, codec, train=False)
    for i in (0, 5, 17):
        x, r = ds[i], ann[i]
        c, s = box_to_cs(r.bbox.astype(np.float64), SIZE[0] / SIZE[1], 1.25)
        M = get_affine(c, s, SIZE)
        np.testing.assert_allclose(x['meta']['M'].numpy(), M, atol=1e-12)
        lab = r.vis > 0
        np.testing.assert_allclose(x['kpts'].numpy()[lab], apply_affine(r.kpts, M)[lab], atol=1e-4)
        np.testing.assert_array_equal(x['kpts'].numpy()[~lab], 0)
        crop = warp_image(cv2.imread(str(r.image)), M, SIZE)[..., ::-1].astype(int)
        assert np.abs(denormalise(x['image']).astype(int) - crop).max() <= 1
        assert x['target'].shape == (17, HM[1], HM[0]) and x['weight'].dtype == torch.float32
        assert (x['meta']['box_score'], x['meta']['det_index'], x['meta']['ann_id']) == (1.0, -1, r.ann_id)


def test_targets_decode_to_kpts(ann, codec):
    b = batch(TopDownDataset(ann, codec, train=True, seed=5), 32)
    err = (codec.decode(b['target']).kpts[:, 0] - b['kpts']).norm(dim=-1)
    mu, (W, H) = codec.to_heatmap(b['kpts'].double()), codec.heatmap_size
    on = (b['weight'] > 0) & (mu[..., 0] >= 0) & (mu[..., 0] <= W - 1) & (mu[..., 1] >= 0) & (mu[..., 1] <= H - 1)
    assert on.sum() > 100
    assert err[on].max() <= codec.tol  # the codec's promise covers keypoints on the map


def test_integral_codec_targets(ann):
    x = TopDownDataset(ann, IntegralHeatmap(input_size=SIZE, heatmap_size=HM), train=False)[3]
    w = x['weight'] > 0
    torch.testing.assert_close(x['target'].sum((1, 2))[w], torch.ones(int(w.sum())))
    assert x['target'][~w].abs().sum() == 0


@pytest.mark.parametrize('align', ['udp', 'hrnet'])
def test_round_trip_without_augmentation(ann, align):
    cd = udp_heatmap(SIZE, HM) if align == 'udp' else msra_heatmap(SIZE, HM)
    b = batch(TopDownDataset(ann, cd, train=False), 24)
    lab = b['vis'] > 0
    gt = torch.from_numpy(ann.kpts[:24]).double()
    assert (kpts_to_image(b['kpts'], b['meta'])[lab].double() - gt[lab]).abs().max() < 1e-3
    back = kpts_to_image(b['kpts'].numpy(), {k: v.numpy() for k, v in b['meta'].items()})
    assert np.abs(back[lab.numpy()] - ann.kpts[:24][lab.numpy()]).max() < 1e-3
    assert kpts_to_image(b['kpts'][:, None], b['meta']).shape == (24, 1, 17, 2)


@pytest.mark.parametrize('seed', [0, 1])
def test_round_trip_with_augmentation_and_pair_swap(ann, codec, seed):
    aug = Augment(flip_prob=.5, rot_prob=1., half_body_prob=.5)
    b = batch(TopDownDataset(ann, codec, train=True, aug=aug, seed=seed), 32)
    fl = b['meta']['flipped']
    assert 0 < fl.sum() < 32 and (b['meta']['rot'] != 0).all() and (b['meta']['scale'] != b['meta']['scale'][0]).any()
    lab = torch.from_numpy(ann.vis[:32] > 0)
    back = kpts_to_image(b['kpts'], b['meta'], COCO17.flip_index)
    assert (back[lab].double() - torch.from_numpy(ann.kpts[:32])[lab]).abs().max() < 1e-3
    with pytest.raises(ValueError, match='flipped samples need flip_index'): kpts_to_image(b['kpts'], b['meta'])
    # the swap, explicitly: in a flipped sample the left-wrist channel holds the person's right wrist
    lw, rw = COCO17.index('left_wrist'), COCO17.index('right_wrist')
    f = torch.nonzero(fl).flatten()
    np.testing.assert_array_equal(b['vis'][f, lw].numpy(), ann.vis[f.numpy(), rw])
    nf = torch.nonzero(~fl).flatten()
    np.testing.assert_array_equal(b['vis'][nf, lw].numpy(), ann.vis[nf.numpy(), lw])
    i = int(f[(b['vis'][f, lw] > 0)][0])
    M = b['meta']['M'][i].numpy()
    assert np.linalg.det(M[:, :2]) < 0
    np.testing.assert_allclose(b['kpts'][i, lw].double().numpy(), apply_affine(ann[i].kpts[[rw]], M)[0], atol=1e-3)


def test_same_batches_with_0_and_2_workers_and_epochs(ann, codec):
    ds = TopDownDataset(ann, codec, train=True, seed=7, aug=Augment(brightness=.2, contrast=.2, saturation=.2))

    def take(dl, n=2): return [b for _, b in zip(range(n), dl)]

    def same(a, b):
        return all(torch.equal(a[k], b[k]) for k in ('image', 'target', 'weight', 'kpts', 'vis')) and \
            all(torch.equal(a['meta'][k], b['meta'][k]) for k in a['meta'])

    b0 = take(DataLoader(ds, batch_size=8, num_workers=0))
    b2 = take(DataLoader(ds, batch_size=8, num_workers=2))
    assert all(same(x, y) for x, y in zip(b0, b2))
    dl = DataLoader(ds, batch_size=8, num_workers=2, persistent_workers=True)
    assert all(same(x, y) for x, y in zip(take(dl), b0))
    ds.set_epoch(3)
    e3 = take(dl)
    assert not same(e3[0], b0[0])
    assert all(same(x, y) for x, y in zip(e3, take(DataLoader(ds, batch_size=8, num_workers=0))))
    ds.set_epoch(0)
    assert same(take(DataLoader(ds, batch_size=8))[0], b0[0])


def test_augment_draws():
    aug = Augment()
    ps = [aug.sample(sample_rng(0, 0, i)) for i in range(3000)]
    s, r = np.array([p.scale for p in ps]), np.array([p.rot for p in ps])
    assert s.min() >= 0.65 and s.max() <= 1.35 and np.abs(r).max() <= 90
    assert abs((r == 0).mean() - 0.4) < 0.03 and abs(np.mean([p.flip for p in ps]) - 0.5) < 0.03
    assert abs(np.mean([p.upper for p in ps]) - 0.7) < 0.03
    assert aug.sample(sample_rng(1, 2, 3)) == aug.sample(sample_rng(1, 2, 3)) != aug.sample(sample_rng(1, 2, 4))
    m = Augment.mpii()
    assert (m.scale_factor, m.rot_factor, m.half_body_prob) == (.25, 30., 0.)
    c = np.array([Augment(brightness=.3).sample(sample_rng(0, 0, i)).colour for i in range(500)])
    assert c[:, 0].min() >= .7 and c[:, 0].max() <= 1.3 and c[:, 0].std() > .1 and (c[:, 1:] == 1).all()
    with pytest.raises(ValueError, match='rot_prob must be a probability'): Augment(rot_prob=-0.1)


def test_half_body_uses_the_schema_split():
    assert list(COCO17.upper_body) == list(range(11)) and list(MPII16.upper_body) == list(range(7, 16))
    rng = np.random.default_rng(0)
    k, v = rng.uniform(0, 100, (17, 2)), np.full(17, 2)
    c, s = half_body_cs(k, v, COCO17.upper_body, 0.75, upper=True)
    np.testing.assert_allclose(c, k[:11].mean(0))
    ext = k[:11].max(0) - k[:11].min(0)
    np.testing.assert_allclose(s * 200 / 1.5, [max(ext[0], .75 * ext[1]), max(ext[1], ext[0] / .75)])
    np.testing.assert_allclose(half_body_cs(k, v, COCO17.upper_body, 0.75, upper=False)[0], k[11:].mean(0))


def test_outside_the_crop_weight_zero_vis_kept(ann, codec):
    b = batch(TopDownDataset(ann, codec, train=False, padding=.5), 32)
    mu, (W, H) = codec.to_heatmap(b['kpts'].double()), codec.heatmap_size
    lab = b['vis'] > 0
    far = lab & ((mu[..., 0] < -8) | (mu[..., 0] > W + 7) | (mu[..., 1] < -8) | (mu[..., 1] > H + 7))
    on = lab & (mu[..., 0] >= 0) & (mu[..., 0] <= W - 1) & (mu[..., 1] >= 0) & (mu[..., 1] <= H - 1)
    assert far.sum() > 10 and on.sum() > 10
    assert (b['weight'][far] == 0).all() and (b['weight'][on] == 1).all()
    np.testing.assert_array_equal(b['vis'].numpy(), ann.vis[:32])


def test_check_batch(ann, codec):
    good = batch(TopDownDataset(ann, codec, train=True), 8)
    assert check_batch(good) is good
    moved = deepcopy(ann)
    for r in moved.records: r.bbox = np.array([0, 0, 12, 12], np.float32)
    idx = [i for i in range(len(ann)) if (ann[i].kpts[ann[i].vis > 0] > 20).all()][:8]
    ds = TopDownDataset(moved, codec, train=False)
    far = default_collate([ds[i] for i in idx])
    with pytest.raises(BatchError, match=r'all \d+ labelled keypoints fall outside their 96x128 crops'): check_batch(far)
    empty = {**good, 'vis': torch.zeros_like(good['vis']), 'weight': torch.zeros_like(good['weight']), 'target': torch.zeros_like(good['target'])}
    with pytest.raises(BatchError, match='all targets are zero: the 8 samples'): check_batch(empty)
    with pytest.raises(BatchError, match='every weight is 0'): check_batch({**good, 'weight': torch.zeros_like(good['weight'])})
    with pytest.raises(BatchError, match='the codec rendered nothing'): check_batch({**good, 'target': torch.zeros_like(good['target'])})
    with pytest.raises(BatchError, match=r'nearly\) zero: the largest value in the batch is'):
        check_batch({**good, 'target': torch.full_like(good['target'], 1e-40)})
    tiny = TopDownDataset(ann, dark_heatmap((96, 128), (24, 32), 0.01), train=True)  # a σ far below the pixel grid
    with pytest.raises(BatchError, match='nearly'): check_batch(next(iter(DataLoader(tiny, batch_size=8))))


def test_bad_images(ann, codec, tmp_path):
    bad, iid = deepcopy(ann), ann[0].image_id
    (tmp_path / 'junk.jpg').write_bytes(b'\xff\xd8 truncated')
    (tmp_path / 'empty.jpg').write_bytes(b'')
    cv2.imwrite(str(tmp_path / 'small.png'), np.zeros((10, 10, 3), np.uint8))
    cases = {'missing.jpg': (FileNotFoundError, 'missing.jpg does not exist'), 'junk.jpg': (ValueError, 'junk.jpg (12 bytes): corrupt'),
             'empty.jpg': (ValueError, 'empty.jpg (0 bytes): corrupt'), 'small.png': (ValueError, 'small.png is 10x10 px but')}
    for name, (err, msg) in cases.items():
        bad.images[iid].path = tmp_path / name
        with pytest.raises(err) as e: TopDownDataset(bad, codec, train=False)[0]
        assert msg in str(e.value) and f'image_id={iid}' in str(e.value), str(e.value)
    with pytest.raises(IndexError): TopDownDataset(ann, codec, train=False)[len(ann)]


def test_tiny_boxes_get_a_minimal_crop(ann, codec):
    tiny = deepcopy(ann)
    tiny.records[0].bbox = np.array([50, 50, 1, 1], np.float32)
    ds = TopDownDataset(tiny, codec, train=True, aug=Augment(rot_prob=0, half_body_prob=0))
    for e in range(6):
        ds.set_epoch(e)
        assert (ds[0]['meta']['scale'] * 200 >= MIN_CROP_PX - 1e-9).all()


def test_loader_timing(ann, codec):
    t = loader_timing(TopDownDataset(ann, codec, train=True), batch_size=8, workers=0, n_batches=2)
    assert 0 < t < 5


def test_detector_boxes(shared, codec):
    p = shared / 'samples' / 'coco'
    cann = read_coco(p / 'test_coco.json')
    dets = read_detections(p / 'test_coco_det_AP_H_56.json', cann)
    ds = TopDownDataset(cann, codec, train=False, boxes=dets, min_box_score=0.1)
    keep = np.flatnonzero(dets.score >= 0.1)
    assert len(ds) == len(keep) and ds.skipped['score below 0.1'] == len(dets) - len(keep)
    b = batch(ds, len(ds))
    np.testing.assert_array_equal(b['meta']['det_index'].numpy(), keep)
    np.testing.assert_array_equal(b['meta']['box'].numpy(), dets.bbox[keep])
    np.testing.assert_allclose(b['meta']['box_score'].numpy(), dets.score[keep], rtol=1e-6)
    assert b['meta']['image_id'].tolist() == dets.image_id[keep].tolist()
    assert b['weight'].sum() == 0 and b['target'].abs().sum() == 0 and (b['vis'] == 0).all()
    centres = box_to_cs(dets.bbox[keep].astype(np.float64), SIZE[0] / SIZE[1], 1.25)[0][:, None]
    np.testing.assert_allclose(apply_affine(centres, b['meta']['M'].numpy())[:, 0], np.broadcast_to([47.5, 63.5], (len(keep), 2)), atol=1e-9)
    with pytest.raises(BatchError, match='no labelled keypoint'): check_batch(b)
    with pytest.raises(ValueError, match='detector boxes carry no keypoints'): TopDownDataset(cann, codec, train=True, boxes=dets)


def test_coco_mini_batch(shared):
    mini = read_coco(shared / 'coco-mini' / 'annotations' / 'person_keypoints_train2017.json')
    cd = udp_heatmap((192, 256), (48, 64))
    b = check_batch(batch(TopDownDataset(mini, cd, train=True), 8))
    assert b['image'].shape == (8, 3, 256, 192) and b['target'].shape == (8, 17, 64, 48)
    assert b['target'].abs().sum() > 0 and b['weight'].sum() > 0
    e = batch(TopDownDataset(mini, cd, train=False), 8)
    assert (e['target'].flatten(1).amax(1) > .9).all()
    np.testing.assert_array_equal(e['weight'].numpy(), (mini.vis[:8] > 0).astype(np.float32))
    lab = e['vis'] > 0
    assert (kpts_to_image(e['kpts'], e['meta'])[lab].double() - torch.from_numpy(mini.kpts[:8])[lab]).abs().max() < 1e-3


def test_mpii_centre_scale_crops(shared):
    mp = read_mpii(shared / 'samples' / 'mpii' / 'test_mpii.json')
    b = check_batch(batch(TopDownDataset(mp, udp_heatmap((256, 256), (64, 64)), train=False), len(mp)))
    lab = b['vis'] > 0
    assert ((b['kpts'][lab] >= 0) & (b['kpts'][lab] <= 255)).all()
    s = np.stack([r.scale for r in mp])
    np.testing.assert_allclose(b['meta']['scale'].numpy(), s * 1.25, rtol=1e-6)
    np.testing.assert_allclose(b['meta']['centre'].numpy(), np.stack([r.centre for r in mp]) + np.c_[np.zeros(len(s)), 15 * s[:, 1]], atol=1e-4)
    assert (kpts_to_image(b['kpts'], b['meta'])[lab].double() - torch.from_numpy(mp.kpts)[lab]).abs().max() < 1e-3
