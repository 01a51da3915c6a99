"""posebench.vis.draw: what is drawn is where the keypoints are; unlabelled points are not drawn; works headless."""
import io

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from posebench.core import COCO17, CROWDPOSE14
from posebench.vis.draw import draw_pose, figure_for_image, show_samples


def _people(n, schema, seed=0, size=(120, 90)):
    rng = np.random.default_rng(seed)
    kpts = rng.uniform(5, np.array(size) - 5, (n, schema.n_kpts, 2))
    vis = rng.choice([0, 1, 2], (n, schema.n_kpts), p=[.2, .2, .6])
    return kpts, vis


@pytest.mark.parametrize('schema', [COCO17, CROWDPOSE14])
def test_draw_pose_artists_match_keypoints(schema):
    kpts, vis = _people(3, schema)
    fig = Figure(); ax = fig.add_subplot(); ax.imshow(np.zeros((90, 120, 3), np.uint8))
    a = draw_pose(ax, kpts, vis, schema)
    sk = np.array(schema.skeleton)
    solid = [kpts[n, e] for n in range(3) for e in sk if (vis[n, e] == 2).all()]
    dashed = [kpts[n, e] for n in range(3) for e in sk if (vis[n, e] > 0).all() and (vis[n, e] == 1).any()]
    np.testing.assert_allclose(np.reshape(a.edges.get_segments(), (-1, 2, 2)), np.reshape(solid, (-1, 2, 2)))
    np.testing.assert_allclose(np.reshape(a.occluded_edges.get_segments(), (-1, 2, 2)), np.reshape(dashed, (-1, 2, 2)))
    np.testing.assert_allclose(a.points.get_offsets(), kpts[vis == 2])
    np.testing.assert_allclose(a.occluded_points.get_offsets(), kpts[vis == 1])
    # colours follow the schema, keypoint by keypoint
    cols = np.array(schema.colours)[np.nonzero(vis == 2)[1]] / 255
    np.testing.assert_allclose(a.points.get_facecolors()[:, :3], cols)
    # unlabelled points appear in no artist
    drawn = np.concatenate([a.points.get_offsets(), a.occluded_points.get_offsets(),
                            np.reshape(a.edges.get_segments() + a.occluded_edges.get_segments(), (-1, 2))])
    for p in kpts[vis == 0]: assert not np.isclose(drawn, p).all(1).any(), p
    # one colour overrides the schema's (ground truth under a prediction)
    w = draw_pose(ax, kpts, vis, schema, colour='white')
    assert np.allclose(w.points.get_facecolors()[:, :3], 1) and np.allclose(w.edges.get_colors()[:, :3], 1)


def test_draw_pose_rejects_bad_shapes():
    fig = Figure(); ax = fig.add_subplot()
    with pytest.raises(ValueError, match=r'kpts must have shape \(N, 17, 2\)'): draw_pose(ax, np.zeros((2, 14, 2)), np.ones((2, 14)), COCO17)
    with pytest.raises(ValueError, match='vis values must be 0, 1 or 2'): draw_pose(ax, np.zeros((17, 2)), np.full(17, 3), COCO17)
    with pytest.raises(ValueError, match=r'bboxes must have shape \(2, 4\)'):
        draw_pose(ax, np.zeros((2, 17, 2)), np.ones((2, 17)), COCO17, bboxes=np.zeros((3, 4)))


def test_rendered_pixels_land_on_keypoints():
    """Saved with Agg, the pixel at a visible keypoint (x, y) -> row y, column x has that keypoint's colour."""
    w, h = 80, 60
    kpts, vis = np.zeros((1, 17, 2)), np.zeros((1, 17), int)
    kpts[0, [0, 9, 16]] = [(10, 12), (70, 45), (33, 50)]; vis[0, [0, 9, 16]] = 2
    fig, ax = figure_for_image(w, h)
    ax.imshow(np.zeros((h, w, 3), np.uint8)); draw_pose(ax, kpts, vis, COCO17, radius=2.5)
    buf = io.BytesIO(); fig.savefig(buf, format='png')
    img = np.asarray(Image.open(buf).convert('RGB')).astype(int)
    assert img.shape == (h, w, 3)
    for k in (0, 9, 16):
        x, y = kpts[0, k].astype(int)
        assert np.abs(img[y, x] - COCO17.colours[k]).max() < 30, (k, img[y, x])
    ys, xs = np.nonzero(img.sum(-1) > 0)  # every lit pixel belongs to one of the three dots: no edges were drawn
    d = np.hypot(xs[:, None] - kpts[0, [0, 9, 16], 0], ys[:, None] - kpts[0, [0, 9, 16], 1]).min(1)
    assert len(xs) > 0 and d.max() < 6, d.max()


def test_show_samples_grid_and_save(tmp_path):
    ims = [np.full((90, 120, 3), 50, np.uint8) for _ in range(5)]
    people = [_people(n, COCO17, seed=n) for n in (1, 2, 0, 3, 1)]
    fig = show_samples(ims, [k for k, _ in people], [v for _, v in people], COCO17, ncols=3,
                       bboxes=[np.tile([5, 5, 20, 30], (len(k), 1)) for k, _ in people], titles=list('abcde'))
    assert len(fig.axes) == 6 and not fig.axes[5].images  # 2 x 3 grid, last cell empty
    for ax, (k, v) in zip(fig.axes, people):
        np.testing.assert_allclose(ax.collections[2].get_offsets().reshape(-1, 2), k[v == 2].reshape(-1, 2))
        assert len(ax.patches) == len(k)
        assert ax.get_xlim() == (-.5, 119.5) and ax.get_ylim() == (89.5, -.5)
    fig.savefig(tmp_path / 's.png')
    assert Image.open(tmp_path / 's.png').size[0] > 100


def test_show_samples_reads_image_paths(tmp_path):
    import cv2
    img = np.zeros((40, 50, 3), np.uint8); img[..., 2] = 255  # red in BGR
    cv2.imwrite(str(tmp_path / 'r.png'), img)
    fig = show_samples([tmp_path / 'r.png'], [np.zeros((0, 17, 2))], [np.zeros((0, 17))], COCO17)
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array()[0, 0], [255, 0, 0])  # shown as RGB
    with pytest.raises(FileNotFoundError, match='cannot read image'):
        show_samples([tmp_path / 'missing.png'], [np.zeros((0, 17, 2))], [np.zeros((0, 17))], COCO17)
