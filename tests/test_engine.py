"""The training generator, data access and tiled inference."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import torch

import napari_b2u.engine.training as training
from napari_b2u.api import STOP, Done, Preview, PreviewPlane, Started, Step, TrainConfig, train
from napari_b2u.engine import Planes, train_events
from napari_b2u.engine.data import PatchSampler, PlaneSet, estimate_normalization, resolve_axes
from napari_b2u.engine.inference import denoise_plane
from napari_b2u.engine.training import step_cap

from .utils import TINY, psnr, smooth_image


def drain(gen, send=lambda event: None):
    events, command = [], None
    try:
        while True:
            event = gen.send(command)
            events.append(event)
            command = send(event)
    except StopIteration as done:
        return events, done.value


def test_event_order_and_return_value(tiny_config):
    image = smooth_image((48, 48))
    events, model = drain(train_events(image, config=tiny_config))
    assert isinstance(events[0], Started) and isinstance(events[-1], Done)
    steps = [e for e in events if isinstance(e, Step)]
    assert steps and steps[-1].step == 6 and events[-1].reason == "steps"
    assert [e.step for e in steps] == sorted(e.step for e in steps)
    for e in steps:
        assert np.isfinite([e.loss, e.l_rev, e.l_reg]).all()
        assert e.lam >= 2.0 and 0 < e.lr <= 1e-3 and 0 < e.progress <= 1
    assert model.summary.steps == 6 and model.completed
    assert model.summary.trained_on == {"shape": [48, 48], "dtype": "float32", "axes": "YX"}


def test_events_come_often_and_stop_keeps_the_model():
    image = smooth_image((64, 64))
    config = TrainConfig(steps=10_000, time_budget=None, **TINY)
    events, model = drain(
        train_events(image, config=config),
        lambda e: STOP if isinstance(e, Step) and e.step >= 3 else None,
    )
    assert isinstance(events[-1], Done) and events[-1].reason == "stopped"
    assert 3 <= model.summary.steps < 10_000
    assert not model.completed
    out = model.denoise(image)
    assert out.shape == image.shape and np.isfinite(out).all()


def test_closing_the_generator_aborts():
    gen = train_events(
        smooth_image((48, 48)), config=TrainConfig(steps=10_000, time_budget=None, **TINY)
    )
    assert isinstance(next(gen), Started)
    assert isinstance(next(gen), Step)
    gen.close()
    with pytest.raises(StopIteration):
        next(gen)


def step_clock(monkeypatch, seconds_per_step: float) -> None:
    """Training's clock advanced only by its steps: budgets then do not hang on the machine's load."""
    now, forward = [0.0], training.b2u_forward

    def timed_forward(*args):
        now[0] += seconds_per_step
        return forward(*args)

    monkeypatch.setattr(training, "clock", lambda: now[0])
    monkeypatch.setattr(training, "b2u_forward", timed_forward)


def test_time_budget_stops_training(monkeypatch):
    step_clock(monkeypatch, 0.03)
    config = TrainConfig(steps=None, time_budget=1.0, cap_steps=False, **TINY)
    events, model = drain(train_events(smooth_image((48, 48)), config=config))
    assert events[-1].reason == "time"
    assert model.summary.steps == 34 and model.summary.seconds == pytest.approx(1.02)
    # the schedules follow elapsed time: lambda has ramped by the end
    steps = [e for e in events if isinstance(e, Step)]
    assert [round(e.elapsed, 2) for e in steps] == [0.27, 0.54, 0.81, 1.02]
    assert steps[-2].lam > 10 and steps[-1].progress == 1.0


def test_step_cap_ends_a_time_budgeted_run(monkeypatch):
    monkeypatch.setattr(training, "CAP_SCALE", 2.0)  # a 48x48 image: 2 * 2304**0.25 = 14 steps
    config = TrainConfig(steps=None, time_budget=120.0, **TINY)
    events, model = drain(train_events(smooth_image((48, 48)), config=config))
    assert events[0].step_cap == 14
    assert events[-1].reason == "cap" and model.summary.steps == 14 and model.completed
    assert model.summary.progress == 1.0 and model.summary.seconds < 120
    # the schedules ran their whole course within the capped steps
    last = [e for e in events if isinstance(e, Step)][-1]
    assert last.progress == 1.0 and last.lr < config.lr


def test_step_cap_spares_explicit_steps_and_can_be_turned_off(monkeypatch):
    monkeypatch.setattr(training, "CAP_SCALE", 2.0)
    image = smooth_image((48, 48))
    explicit = TrainConfig(steps=20, time_budget=60.0, **TINY)
    events, model = drain(train_events(image, config=explicit))
    assert events[0].step_cap is None
    assert events[-1].reason == "steps" and model.summary.steps == 20
    step_clock(monkeypatch, 0.01)
    off = TrainConfig(steps=None, time_budget=0.3, cap_steps=False, **TINY)
    events, model = drain(train_events(image, config=off))
    assert events[0].step_cap is None and events[-1].reason == "time"
    assert model.summary.steps == 30  # past the cap of 14 it would have had


def test_step_cap_grows_with_the_pixels_of_all_planes():
    assert step_cap(Planes(np.zeros((256, 256), np.float32))) == 4096
    set12 = PlaneSet([Planes(np.zeros((7, 256, 256), np.float32)),
                      Planes(np.zeros((5, 512, 512), np.float32))])  # fmt: skip
    assert step_cap(set12) == 9337
    volume = Planes(np.zeros((8, 64, 64), np.float32), "ZYX", spatial_dims=3)
    assert step_cap(volume) == round(256 * (8 * 64 * 64) ** 0.25)
    rgb = Planes(np.zeros((64, 64, 3), np.float32), "YXC")  # channels are not pixels
    assert step_cap(rgb) == 256 * 8


def test_preview_events():
    config = TrainConfig(steps=4, time_budget=None, **TINY)
    stack = np.stack([smooth_image((40, 50), seed=s) for s in range(3)])
    events, _ = drain(
        train_events(stack, config=config, preview_plane=2, preview_interval=0.0)
    )
    previews = [e for e in events if isinstance(e, Preview)]
    assert previews and previews[0].plane == 2
    assert previews[0].image.shape == (40, 50) and previews[0].offset == (0, 0)


def test_preview_plane_is_sent_in(monkeypatch):
    monkeypatch.setattr("napari_b2u.engine.training.REPORT_INTERVAL", 0.0)
    config = TrainConfig(steps=6, time_budget=None, **TINY)
    stack = np.stack([smooth_image((40, 50), seed=s) for s in range(3)])
    gen = train_events(stack, config=config, preview_plane=0, preview_interval=0.0)
    planes, command = [], None
    with pytest.raises(StopIteration):
        while True:
            event = gen.send(command)
            command = PreviewPlane(1) if isinstance(event, Step) and event.step == 2 else None
            if isinstance(event, Preview):
                planes.append(event.plane)
    assert planes[0] == 0 and planes[-1] == 1 and 1 not in planes[:1]


def test_same_seed_same_model(tiny_config):
    image = smooth_image((48, 48))
    a, b = train(image, config=tiny_config), train(image, config=tiny_config)
    for pa, pb in zip(a.net.parameters(), b.net.parameters()):
        assert torch.equal(pa, pb)
    c = train(image, config=tiny_config.replace(seed=1))
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.net.parameters(), c.net.parameters()))


def test_continue_a_stopped_run_and_fine_tune_a_finished_one(monkeypatch):
    monkeypatch.setattr("napari_b2u.engine.training.REPORT_INTERVAL", 0.0)  # a Step per step
    image = smooth_image((48, 48))
    config = TrainConfig(steps=12, time_budget=None, **TINY)
    stopped = train(
        image,
        config=config,
        callback=lambda e: STOP if isinstance(e, Step) and e.step >= 4 else None,
    )
    assert stopped.summary.steps < 12 and stopped.optimizer_state is not None
    resumed = train(image, init=stopped)
    assert resumed.summary.steps == 12 and resumed.completed  # the same run, finished
    assert stopped.summary.steps < 12  # the input model was not changed
    again = train(image, init=resumed, steps=3)
    assert again.summary.steps == 3  # a finished run is fine-tuned in a new run
    with pytest.raises(ValueError, match="different network"):
        train(image, init=resumed, features=16)


@pytest.mark.parametrize(
    "shape, axes, channels, n",
    [
        ((3, 40, 44), None, 1, 3),
        ((2, 3, 40, 44), "TZYX", 1, 6),
        ((40, 44, 3), "YXC", 3, 1),
        ((2, 3, 40, 44), "TCYX", 3, 2),
    ],
)
def test_stacks_and_channels(shape, axes, channels, n):
    rng = np.random.default_rng(0)
    image = (rng.random(shape) * 200).astype(np.uint8)
    planes = Planes(image, axes)
    assert planes.channels == channels and planes.n == n
    model = train(image, axes=axes, steps=2, time_budget=None, **TINY)
    assert model.channels == channels
    out = model.denoise(image, axes=axes)
    assert out.shape == image.shape and out.dtype == np.float32 and np.isfinite(out).all()
    # planes come back in place: plane i of the output is the denoised plane i
    i = n - 1
    single = model.denoise(
        np.asarray(image[planes.index(i)]),
        axes=axes and "".join(a for a in planes.axes if a in "YXCS"),
    )
    np.testing.assert_allclose(out[planes.index(i)], single, atol=1e-4)


def test_lazy_inputs_are_read_patch_by_patch():
    reads = []

    class Recording:
        """An array-like that refuses whole-stack reads."""

        def __init__(self, data):
            self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim

        def __getitem__(self, idx):
            assert isinstance(idx[0], int), "read a whole stack at once"
            reads.append(idx)
            return self.data[idx]

    stack = (np.random.default_rng(0).random((5, 40, 40)) * 1000).astype(np.uint16)
    model = train(Recording(stack), steps=3, time_budget=None, **TINY)
    assert reads and model.summary.trained_on["shape"] == [5, 40, 40]
    lazy = da.from_array(stack, chunks=(1, 40, 40))
    np.testing.assert_allclose(model.denoise(lazy), model.denoise(stack), atol=1e-4)


def test_zarr_input(tmp_path):
    zarr = pytest.importorskip("zarr")
    z = zarr.open_array(
        str(tmp_path / "a.zarr"), mode="w", shape=(3, 40, 40), chunks=(1, 40, 40), dtype="u2"
    )
    z[:] = (np.random.default_rng(0).random((3, 40, 40)) * 1000).astype(np.uint16)
    model = train(z, steps=2, time_budget=None, **TINY)
    assert model.denoise(z).shape == (3, 40, 40)


def test_normalization_is_stored_and_outputs_are_in_input_units(trained_model, noisy_pair):
    clean, noisy = noisy_pair
    assert trained_model.mean[0] == pytest.approx(noisy.mean(), rel=0.02)
    assert trained_model.std[0] == pytest.approx(noisy.std(), rel=0.05)
    out = trained_model.denoise(noisy)
    assert abs(out.mean() - noisy.mean()) < 10
    shifted = trained_model.denoise(noisy.astype(np.float64))
    np.testing.assert_allclose(out, shifted, atol=1e-3)


def test_nan_input_is_refused_with_advice():
    image = smooth_image((40, 40))
    image[3, 3] = np.nan
    with pytest.raises(ValueError, match="nan_to_num"):
        train(image, steps=1, time_budget=None, **TINY)


def test_axes_errors_say_what_to_do():
    with pytest.raises(ValueError, match="one letter per dimension|e.g."):
        resolve_axes((3, 40, 40), "YX")
    with pytest.raises(ValueError, match="Y and X"):
        resolve_axes((3, 40, 40), "TYY")
    assert resolve_axes((4, 3, 40, 40), None) == "NNYX"


def test_patch_sampler_shapes_and_normalisation():
    stack = np.stack([smooth_image((40, 60), seed=s) for s in range(4)])
    planes = Planes(stack)
    mean, std = estimate_normalization(planes)
    sampler = PatchSampler(planes, (32, 32), mean, std, True, np.random.default_rng(0))
    batch = sampler.batch(64)
    assert batch.shape == (64, 1, 32, 32) and batch.dtype == np.float32
    assert abs(batch.mean()) < 0.3 and 0.6 < batch.std() < 1.4


@pytest.mark.parametrize("mode", ["weighted", "blind", "visible"])
def test_tiled_matches_untiled(trained_model, mode):
    image = smooth_image((200, 232)) + np.random.default_rng(2).normal(0, 25, (200, 232)).astype(
        np.float32
    )
    whole = trained_model.denoise(image, mode=mode, tile_size=1024)
    tiled = trained_model.denoise(image, mode=mode, tile_size=64, tile_overlap=32)
    scale = whole.std()
    assert np.abs(tiled - whole).mean() < 0.01 * scale
    assert np.abs(tiled - whole).max() < 0.1 * scale


def test_tiling_covers_awkward_sizes(trained_model):
    net = trained_model.net
    x = np.random.default_rng(0).normal(size=(1, 70, 33)).astype(np.float32)
    out = denoise_plane(
        net,
        x,
        mode="visible",
        cell=2,
        lam=20,
        tile_size=32,
        tile_overlap=8,
        device=torch.device("cpu"),
    )
    assert out.shape == x.shape and np.isfinite(out).all()


def test_training_gives_a_real_psnr_gain(noisy_pair):
    clean, noisy = noisy_pair
    model = train(noisy, steps=150, time_budget=None, **{**TINY, "features": 16})
    gain = psnr(model.denoise(noisy), clean) - psnr(noisy, clean)
    assert gain > 3.0, gain


def test_step_fit_is_the_loss_that_falls():
    """The progress displays show L_rev / (lam + 1)**2: the raw L_rev of a model
    that is equally good grows with lambda, the fit does not."""
    from napari_b2u.engine.events import Step

    def step(l_rev, lam):
        return Step(step=1, elapsed=1.0, progress=0.5, loss=l_rev, l_rev=l_rev, l_reg=0.0,
                    lam=lam, lr=1e-3, steps_per_second=1.0, remaining=None)  # fmt: skip

    assert step(9.0, 2.0).fit == pytest.approx(1.0)
    assert step(441.0, 20.0).fit == pytest.approx(1.0)


def test_visible_check_flags_only_a_visible_output_worse_than_blind():
    from napari_b2u.engine.noise import visible_check

    rng = np.random.default_rng(0)
    clean = smooth_image((64, 64))
    noisy = clean + rng.normal(0, 0.1, clean.shape)
    blind = clean + rng.normal(0, 0.03, clean.shape)
    assert visible_check(noisy, clean + rng.normal(0, 0.12, clean.shape), blind)  # distorted
    assert "'blind' output" in visible_check(noisy, clean + rng.normal(0, 0.12, clean.shape), blind)
    assert visible_check(noisy, clean + rng.normal(0, 0.02, clean.shape), blind) is None
    assert visible_check(noisy, 0.5 * (noisy + clean), blind) is None  # keeps some noise: not provable
    assert visible_check(noisy, blind + rng.normal(0, 0.01, clean.shape), blind) is None  # about equal


def test_a_worse_visible_output_is_reported_after_training(monkeypatch):
    seen = []
    monkeypatch.setattr(training, "visible_check", lambda *a: seen.append(a) or "use blind")
    events = []
    with pytest.warns(RuntimeWarning, match="use blind"):
        model = train(smooth_image((48, 48)), steps=4, time_budget=None, callback=events.append,
                      decorrelate="off", **TINY)  # fmt: skip
    (message,) = [e.message for e in events if isinstance(e, Done)]
    assert message.startswith("use blind") and "now denoises with it" in message
    assert model.summary.message == message and len(seen) == 1
    assert model.config.mode == "blind"  # the better output becomes the model's default
    assert np.array_equal(model.denoise(model.sample, "CYX"), model.denoise(model.sample, "CYX", "blind"))
    noisy, visible, blind = seen[0]
    assert noisy.shape == visible.shape == blind.shape == model.sample.shape
    train(smooth_image((48, 48)), steps=4, time_budget=None, mode="blind", **TINY)
    assert len(seen) == 1  # not checked when the output is not 'visible'
    assert model.subsample == (1, 1) and "either direction" not in message
    # trained on sub-sampled planes (correlated noise), where the reading is unreliable
    with pytest.warns(RuntimeWarning, match="either direction"):
        model = train(smooth_image((48, 48)), steps=4, time_budget=None, decorrelate="X", **TINY)
    assert model.subsample == (1, 2) and "either direction" in model.summary.message
