"""PixelRNN: the Row LSTM net, its causality, its row-by-row sampler and the model's runs."""

import json
import math
from functools import partial

import pytest
import torch

from genlab.errors import ConfigError, DataError, GenlabError
from genlab.models.pixelcnn import PixelCNN
from genlab.models.pixelrnn import PixelRNN
from genlab.nets.pixelcnn import PixelCNNNet
from genlab.nets.pixelrnn import MaskedRowConv, RowLSTMNet, RowSampler

from helpers import SHORT, cli_in_process, one_line_error

SMALL = ["model=pixelrnn", "model.net.hidden=8", "model.net.num_layers=1"]
TINY = [*SMALL, "data=digits", "data.image_size=8", "data.binarize=true"]


def make_net(channels=2, levels=2, num_classes=0, num_layers=2) -> RowLSTMNet:
    torch.manual_seed(0)
    return RowLSTMNet(
        channels, levels=levels, hidden=8, num_layers=num_layers, num_classes=num_classes
    )


def make_pixelrnn(levels=2, num_classes=0, shape=(1, 5, 7)) -> PixelRNN:
    net = make_net(shape[0], levels, num_classes)
    return PixelRNN(net, partial(torch.optim.Adam), shape, num_classes=num_classes)


def influence(out, x: torch.Tensor, i: int, j: int) -> torch.Tensor:
    """|d out[pixel (i, j)] / d x| summed over the images and channels: H x W."""
    (grad,) = torch.autograd.grad(out[..., i, j].sum(), x, retain_graph=True)
    return grad.abs().sum(dim=(0, 1))


def assert_causal(forward, height=5, width=7, channels=2):
    """The output at pixel i depends on some pixel before i (raster order) and on no other
    (four images: a head whose ReLUs are all off at a pixel of one image passes nothing)."""
    x = torch.randn(4, channels, height, width, requires_grad=True)
    out = forward(x)
    order = torch.arange(height * width).view(height, width)
    for i, j in [(0, 0), (0, 3), (2, 0), (2, 4), (3, 6), (height - 1, width - 1)]:
        seen = influence(out, x, i, j)
        position = i * width + j
        assert seen[order >= position].sum() == 0, (i, j)
        if position > 0:
            assert seen[order < position].sum() > 0, (i, j)


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_the_row_convolution_sees_the_left_and_the_centre(kernel_size):
    conv = MaskedRowConv(1, 1, kernel_size)
    x = torch.randn(1, 1, 3, 9, requires_grad=True)
    seen = influence(conv(x), x, 1, 4)
    expected = torch.zeros(3, 9)
    expected[1, 4 - kernel_size // 2 : 5] = 1
    assert torch.equal(seen > 0, expected > 0)
    with pytest.raises(ConfigError, match="row_kernel_size must be odd"):
        MaskedRowConv(1, 1, 2)


@pytest.mark.parametrize("levels,num_classes", [(2, 0), (256, 3)])
def test_the_first_layer_and_the_net_are_causal(levels, num_classes):
    net = make_net(levels=levels, num_classes=num_classes, num_layers=3)
    labels = torch.tensor([1, 0, 2, 1]) if num_classes else None
    assert_causal(net.first)  # mask A: the centre pixel hidden
    assert_causal(lambda x: net(x, labels))


def test_the_lstm_reaches_far_up_the_image():
    """The state carried down the rows lets a pixel see rows that the convolutions alone
    (7x7 first layer, 1-D kernels of 3) could not reach: 6 rows above."""
    net = make_net(channels=1, num_layers=1)
    x = torch.randn(1, 1, 8, 5, requires_grad=True)
    seen = influence(net(x), x, 7, 2)
    assert seen[0].sum() > 0 and seen[7, 2:].sum() == 0


@pytest.mark.parametrize("levels,num_classes", [(2, 0), (256, 0), (2, 10)])
def test_output_shapes(levels, num_classes):
    net = make_net(channels=3, levels=levels, num_classes=num_classes)
    x = torch.rand(4, 3, 6, 5) * 2 - 1
    labels = torch.arange(4) if num_classes else None
    out = net(x, labels)
    assert out.shape == ((4, 3, 6, 5) if levels == 2 else (4, 3, 256, 6, 5))
    if num_classes:
        with pytest.raises(GenlabError, match="class-conditional: pass labels"):
            net(x)
        assert not torch.allclose(out, net(x, torch.arange(4).flip(0)))  # the label matters


def test_pixelrnn_nll_is_a_normalised_likelihood():
    """Summed over every possible 2x2 binary image, p(x) must be 1."""
    model = make_pixelrnn(shape=(1, 2, 2))
    bits = torch.tensor([[(v >> k) & 1 for k in range(4)] for v in range(16)]).float()
    images = (bits * 2 - 1).view(16, 1, 2, 2)
    total = model.nll(images, None).neg().exp().sum()
    assert total.item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("levels,num_classes", [(2, 0), (256, 3)])
def test_the_row_sampler_gives_the_nets_logits(levels, num_classes):
    """Pixel by pixel, with the state carried along the rows: the logits of the full pass."""
    net = make_net(levels=levels, num_classes=num_classes).eval()
    x = torch.rand(3, 2, 5, 7) * 2 - 1
    labels = torch.tensor([0, 2, 1]) if num_classes else None
    with torch.no_grad():
        full = net(x, labels)
        sampler = RowSampler(net, 3, 7, labels)
        for i in range(5):
            for j in range(7):
                step = sampler.logits(x, i, j)
                assert torch.allclose(step, full[..., i, j], atol=1e-5), (i, j)


@pytest.mark.parametrize("levels,num_classes", [(2, 0), (256, 3)])
def test_fast_sampling_draws_the_reference_samples(levels, num_classes):
    """The same generator gives the same images as PixelCNN's sampler (a full pass over the
    rows so far for every pixel)."""
    model = make_pixelrnn(levels=levels, num_classes=num_classes)
    labels = torch.tensor([0, 1, 2, 2, 1, 0])[:5] if num_classes else None
    fast = model.sample(5, labels, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        reference = PixelCNN.sample_chunk(model, 5, labels, torch.Generator().manual_seed(3))
    assert torch.equal(fast, reference)
    assert fast.shape == (5, 1, 5, 7) and fast.min() >= -1 and fast.max() <= 1
    if levels == 2:
        assert set(fast.unique().tolist()) <= {-1.0, 1.0}
    else:
        assert len(fast.unique()) > 20  # grey levels, not two values


def test_a_short_run_writes_its_nll_samples_and_a_checkpoint_genlab_sample_reads(
    run_train, tmp_path
):
    values, run = run_train(
        [
            *TINY,
            *SHORT,
            "logger=none",
            "callbacks.sample_quality.num_samples=100",
            "trainer.log_every_n_steps=1",
        ]  # fmt: skip
    )
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"
    assert 0 < values["eval/nll"] < 64 * math.log(2)  # better than a coin per pixel
    assert values["eval/bpd"] == pytest.approx(values["eval/nll"] / (64 * math.log(2)))
    assert "loss/nll" in values and "eval/fd" in values
    assert (run / "samples" / "last.png").stat().st_size > 1000
    out = tmp_path / "drawn"
    result = cli_in_process(
        "genlab-sample", f"ckpt={run / 'checkpoints' / 'last.ckpt'}", "n=12", f"out={out}",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    samples = torch.load(out / "samples.pt")["samples"]
    assert samples.shape == (12, 1, 8, 8)
    assert set(samples.unique().tolist()) <= {-1.0, 1.0}
    assert (out / "samples.png").is_file()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([*TINY, "data.binarize=false"], "set data.binarize=true"),
        ([*SMALL, "data=ring"], "PixelRNN models images C x H x W, not data of shape [2]; "
         "e.g. data=mnist_mini"),
        ([*TINY, "model.net.hidden=0"], "model.net.hidden and model.net.num_layers must be >= 1"),
        ([*TINY, "model.net.num_layers=0"], "model.net.hidden and model.net.num_layers must be"),
        ([*TINY, "model.net.row_kernel_size=2"], "model.net.row_kernel_size must be odd"),
        ([*TINY, "model.net.levels=3"], "model.net.levels must be 2 (binary) or 256"),
    ],
    ids=["grey_levels", "points", "hidden", "num_layers", "row_kernel", "levels"],
)  # fmt: skip
def test_bad_input_is_a_one_line_error(overrides, message, tmp_path):
    result = cli_in_process("genlab-train", *overrides, "debug=fdr",
                            f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)  # fmt: skip
    assert message in one_line_error(result)


def test_pixelrnn_refuses_a_net_without_lstm_state():
    with pytest.raises(ConfigError, match="RowLSTMNet"):
        PixelRNN(PixelCNNNet(1, hidden=4), partial(torch.optim.Adam), (1, 4, 4))


def test_the_grey_level_check_is_a_data_error(run_train):
    with pytest.raises(DataError, match="data.binarize=true"):
        run_train([*TINY, "data.binarize=false", "debug=fdr"])


@pytest.mark.slow
def test_the_recipe_beats_pixelcnns_likelihood(run_train):
    """experiment=pixelrnn_mnist_mini against PixelCNN's recipe on the same split: 74.3 nats
    (measured, experiment=pixelcnn_mnist_mini)."""
    values, _ = run_train(["experiment=pixelrnn_mnist_mini", "trainer.enable_progress_bar=false"])
    assert values["eval/nll"] < 74.3
