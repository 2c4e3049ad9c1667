"""Tests for noisylab.torch.models (CPU only, small inputs)."""
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from noisylab._validation import NoisylabInputError
from noisylab.torch.models import (
    CNN1D,
    MLP,
    MODELS,
    CoteachingCNN,
    PreActResNet18,
    ResNet32,
    SmallCNN,
    default_model_for,
    make_model,
    n_parameters,
)


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # see tests/conftest.py


# name -> (input_shape, feature_dim of the default architecture)
CASES = {
    "mlp": ((64,), 128),
    "cnn1d": ((1, 40), 64),
    "small_cnn": ((1, 8, 8), 32),
    "coteaching_cnn": ((3, 32, 32), 128),
    "resnet32": ((3, 32, 32), 64),
    "preact_resnet18": ((3, 32, 32), 512),
}


def test_registry_is_complete():
    assert set(MODELS) == set(CASES)
    assert MODELS["mlp"] is MLP and MODELS["preact_resnet18"] is PreActResNet18


@pytest.mark.parametrize("name", list(CASES))
def test_forward_backward_features(name):
    shape, feat_dim = CASES[name]
    n, c = 3, 7
    model = make_model(name, shape, c, random_state=0)
    x = torch.randn(n, *shape, generator=torch.Generator().manual_seed(1))
    logits = model(x)
    assert logits.shape == (n, c)
    assert torch.isfinite(logits).all()
    feats = model.features(x)
    assert feats.shape == (n, feat_dim) == (n, model.feature_dim)
    logits2, feats2 = model(x, return_features=True)
    assert logits2.shape == (n, c) and feats2.shape == (n, feat_dim)
    assert model.head.in_features == feat_dim and model.head.out_features == c
    nn.functional.cross_entropy(logits, torch.arange(n) % c).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_mlp_parameter_count_by_formula():
    d_in, hidden, c = 64, (128, 128), 10
    dims = (d_in, *hidden, c)
    expected = sum((dims[i] + 1) * dims[i + 1] for i in range(len(dims) - 1))
    assert n_parameters(MLP((d_in,), c)) == expected == 26122
    # (1, 8, 8) is flattened to 64 inputs: same count
    assert n_parameters(MLP((1, 8, 8), c)) == expected
    assert n_parameters(MLP((40,), c, hidden=(32,))) == (40 + 1) * 32 + (32 + 1) * c
    assert n_parameters(MLP((40,), c, hidden=())) == (40 + 1) * c


def test_small_cnn_parameter_count_by_formula():
    c0, c1, c2, k = 1, 16, 32, 10
    no_bn = (9 * c0 + 1) * c1 + (9 * c1 + 1) * c2 + (c2 + 1) * k
    with_bn = 9 * c0 * c1 + 2 * c1 + 9 * c1 * c2 + 2 * c2 + (c2 + 1) * k
    assert n_parameters(SmallCNN((1, 8, 8), k)) == no_bn == 5130
    assert n_parameters(SmallCNN((1, 8, 8), k, batch_norm=True)) == with_bn == 5178
    assert n_parameters(SmallCNN((3, 12, 12), k)) == (27 + 1) * c1 + (9 * c1 + 1) * c2 + (c2 + 1) * k


def test_coteaching_cnn_layer_sequence():
    m = CoteachingCNN((3, 32, 32), 10)
    convs = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d)]
    bns = [mod for mod in m.modules() if isinstance(mod, nn.BatchNorm2d)]
    lrelus = [mod for mod in m.modules() if isinstance(mod, nn.LeakyReLU)]
    drops = [mod for mod in m.modules() if isinstance(mod, nn.Dropout2d)]
    pools = [mod for mod in m.modules() if isinstance(mod, nn.MaxPool2d)]
    assert len(convs) == 9 and len(bns) == 9 and len(lrelus) == 9
    assert [c.out_channels for c in convs] == [128] * 3 + [256] * 3 + [512, 256, 128]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert [c.padding for c in convs] == [(1, 1)] * 6 + [(0, 0)] * 3
    assert all(r.negative_slope == 0.01 for r in lrelus)
    assert len(drops) == 2 and all(d.p == 0.25 for d in drops)
    assert len(pools) == 2 and all(p.kernel_size == 2 for p in pools)
    # order: each conv is followed by its BN then LeakyReLU
    seq = list(m.body)
    for i, mod in enumerate(seq):
        if isinstance(mod, nn.Conv2d):
            assert isinstance(seq[i + 1], nn.BatchNorm2d) and isinstance(seq[i + 2], nn.LeakyReLU)
    kinds = [type(mod).__name__ for mod in seq if not isinstance(mod, (nn.BatchNorm2d, nn.LeakyReLU))]
    assert kinds == (["Conv2d"] * 3 + ["MaxPool2d", "Dropout2d"] + ["Conv2d"] * 3 + ["MaxPool2d", "Dropout2d"]
                     + ["Conv2d"] * 3 + ["AdaptiveAvgPool2d", "Flatten"])
    assert isinstance(m.head, nn.Linear) and m.head.in_features == 128
    expected = sum(9 * c.in_channels * c.out_channels + c.out_channels for c in convs) \
        + sum(2 * b.num_features for b in bns) + 129 * 10
    assert n_parameters(m) == expected == 4434570


def test_resnet_depths():
    # Counting rule: weighted layers = 3x3 (and stem) convolutions + the final linear layer;
    # 1x1 projection-shortcut convolutions are not counted (ResNet32 uses option A shortcuts,
    # which have no parameters at all).
    r32 = ResNet32((3, 32, 32), 10)
    convs = [m for m in r32.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in r32.modules() if isinstance(m, nn.Linear)]
    assert len(convs) == 31 and all(c.kernel_size == (3, 3) for c in convs)
    assert len(linears) == 1 and len(convs) + len(linears) == 32
    assert sorted({c.out_channels for c in convs}) == [16, 32, 64]
    assert n_parameters(r32) == 464154
    assert sorted({c.out_channels for c in ResNet32((3, 32, 32), 10, width=32).modules()
                   if isinstance(c, nn.Conv2d)}) == [32, 64, 128]

    p18 = PreActResNet18((3, 32, 32), 10)
    convs = [m for m in p18.modules() if isinstance(m, nn.Conv2d)]
    main = [c for c in convs if c.kernel_size != (1, 1)]
    shortcuts = [c for c in convs if c.kernel_size == (1, 1)]
    linears = [m for m in p18.modules() if isinstance(m, nn.Linear)]
    assert len(main) == 17 and len(shortcuts) == 3 and len(linears) == 1
    assert len(main) + len(linears) == 18
    assert sorted({c.out_channels for c in main}) == [64, 128, 256, 512]


def test_resnets_accept_other_image_sizes():
    x = torch.randn(2, 1, 8, 8)
    assert ResNet32((1, 8, 8), 4)(x).shape == (2, 4)
    assert PreActResNet18((8, 8), 4)(x).shape == (2, 4)  # (H, W) = one channel
    assert ResNet32((3, 7, 9), 3)(torch.randn(2, 3, 7, 9)).shape == (2, 3)  # odd sizes
    assert CoteachingCNN((1, 28, 28), 3)(torch.randn(2, 1, 28, 28)).shape == (2, 3)  # smallest size


@pytest.mark.parametrize("name", ["mlp", "small_cnn", "resnet32"])
def test_same_seed_same_weights_different_seed_different(name):
    shape, _ = CASES[name]
    a = make_model(name, shape, 5, random_state=123).state_dict()
    b = make_model(name, shape, 5, random_state=123).state_dict()
    c = make_model(name, shape, 5, random_state=124).state_dict()
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    weights = [k for k in a if a[k].is_floating_point() and a[k].dim() >= 2]
    assert weights and all(not torch.equal(a[k], c[k]) for k in weights)


def test_seeding_leaves_global_rng_untouched():
    torch.manual_seed(2024)
    before = torch.get_rng_state()
    make_model("small_cnn", (1, 8, 8), 10, random_state=0)
    make_model("mlp", (64,), 10)  # None: fresh entropy, still isolated
    make_model("mlp", (64,), 10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), before)
    # and the global RNG has no influence on the weights
    torch.manual_seed(1)
    w1 = make_model("mlp", (64,), 10, random_state=9).head.weight
    torch.manual_seed(2)
    w2 = make_model("mlp", (64,), 10, random_state=9).head.weight
    assert torch.equal(w1, w2)


def test_generator_and_numpy_generator_seeding():
    np = pytest.importorskip("numpy")
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    m1 = make_model("mlp", (8,), 3, generator=g1)
    m2 = make_model("mlp", (8,), 3, random_state=g2)
    assert torch.equal(m1.head.weight, m2.head.weight)
    m3 = make_model("mlp", (8,), 3, generator=g1)  # generator advanced: new weights
    assert not torch.equal(m1.head.weight, m3.head.weight)
    n1 = make_model("mlp", (8,), 3, random_state=np.random.default_rng(0))
    n2 = make_model("mlp", (8,), 3, random_state=np.random.default_rng(0))
    assert torch.equal(n1.head.weight, n2.head.weight)
    # two unseeded models differ
    assert not torch.equal(make_model("mlp", (8,), 3).head.weight, make_model("mlp", (8,), 3).head.weight)
    with pytest.raises(NoisylabInputError, match="not both"):
        make_model("mlp", (8,), 3, random_state=0, generator=torch.Generator())
    with pytest.raises(NoisylabInputError, match="random_state"):
        make_model("mlp", (8,), 3, random_state=-1)
    with pytest.raises(NoisylabInputError, match="random_state"):
        make_model("mlp", (8,), 3, random_state="0")


def test_train_and_eval_modes_coteaching_cnn():
    model = make_model("coteaching_cnn", (3, 32, 32), 10, random_state=0)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    model.train()
    with torch.no_grad():
        t1, t2 = model(x), model(x)
    assert not torch.equal(t1, t2)  # Dropout2d active in train mode
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert bn.num_batches_tracked.item() == 2
    model.eval()
    stats = bn.running_mean.clone()
    with torch.no_grad():
        e1, e2 = model(x), model(x)
    assert torch.equal(e1, e2)  # eval: no dropout, BN uses running statistics
    assert torch.equal(bn.running_mean, stats) and bn.num_batches_tracked.item() == 2
    # eval output of one example does not depend on the rest of the batch
    with torch.no_grad():
        assert torch.allclose(model(x[:1]), e1[:1], atol=1e-5)


def test_train_and_eval_modes_mlp_dropout():
    model = make_model("mlp", (20,), 3, random_state=0, dropout=0.5)
    assert any(isinstance(m, nn.Dropout) for m in model.modules())
    x = torch.randn(16, 20)
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))
        model.eval()
        assert torch.equal(model(x), model(x))
    assert not any(isinstance(m, nn.Dropout) for m in MLP((20,), 3).modules())


def test_unknown_model_name_suggests():
    with pytest.raises(NoisylabInputError, match="Did you mean 'resnet32'"):
        make_model("resnet-32", (3, 32, 32), 10)
    with pytest.raises(NoisylabInputError, match="Unknown model"):
        make_model(3, (3, 32, 32), 10)
    with pytest.raises(NoisylabInputError, match="Did you mean 'hidden'"):
        make_model("mlp", (64,), 10, hiden=(32,))
    with pytest.raises(NoisylabInputError, match="takes no options"):
        make_model("preact_resnet18", (3, 32, 32), 10, width=2)


@pytest.mark.parametrize("name, shape, needle", [
    ("small_cnn", (64,), r"\(C, H, W\).*\(64,\).*\(1, 8, 8\)"),
    ("coteaching_cnn", (64,), r"\(C, H, W\)"),
    ("coteaching_cnn", (1, 8, 8), r"at least 28x28.*\(1, 8, 8\)"),
    ("resnet32", (10,), r"\(C, H, W\).*\(10,\)"),
    ("preact_resnet18", (1, 2, 3, 4), r"\(C, H, W\).*4-D"),
    ("cnn1d", (3, 32, 32), r"\(C, L\).*\(3, 32, 32\)"),
    ("mlp", (), "non-empty"),
    ("mlp", (64, 0), "positive ints"),
    ("mlp", "64", "positive ints"),
])
def test_bad_input_shape(name, shape, needle):
    with pytest.raises(NoisylabInputError, match=needle):
        make_model(name, shape, 10)


def test_bad_options_and_batches():
    with pytest.raises(NoisylabInputError, match="n_classes"):
        make_model("mlp", (4,), 0)
    with pytest.raises(NoisylabInputError, match="dropout"):
        MLP((4,), 2, dropout=1.0)
    with pytest.raises(NoisylabInputError, match="hidden"):
        MLP((4,), 2, hidden=(8, -1))
    with pytest.raises(NoisylabInputError, match="channels"):
        SmallCNN((1, 8, 8), 2, channels=(8, 8, 8))
    model = SmallCNN((1, 8, 8), 10)
    with pytest.raises(NoisylabInputError, match=r"shape \(1, 8, 8\).*\(5, 64\)"):
        model(torch.zeros(5, 64))
    # the canonical shape is also accepted: (L,) for CNN1D, flat vectors for the MLP
    assert CNN1D((40,), 10)(torch.zeros(2, 40)).shape == (2, 10)
    assert CNN1D((40,), 10)(torch.zeros(2, 1, 40)).shape == (2, 10)
    assert MLP((1, 8, 8), 10)(torch.zeros(2, 64)).shape == (2, 10)
    assert SmallCNN((8, 8), 10)(torch.zeros(2, 8, 8)).shape == (2, 10)


def test_default_model_for():
    assert default_model_for((64,)) == "mlp"
    assert default_model_for((1, 40)) == "cnn1d"
    assert default_model_for((1, 8, 8)) == "small_cnn"
    assert default_model_for((3, 16, 16)) == "small_cnn"
    assert default_model_for((3, 32, 32)) == "preact_resnet18"
    for shape in [(64,), (1, 40), (1, 8, 8), (3, 32, 32)]:
        assert default_model_for(shape) in MODELS
        make_model(default_model_for(shape), shape, 3, random_state=0)  # buildable
    with pytest.raises(NoisylabInputError, match="No default model"):
        default_model_for((1, 2, 3, 4))
    with pytest.raises(NoisylabInputError):
        default_model_for((0,))


def test_tiny_fit_mlp_learns_separable_points():
    g = torch.Generator().manual_seed(0)
    n, d, k = 200, 64, 10
    centers = 0.3 * torch.randn(k, d, generator=g)  # centre distance ~3.4 vs unit noise
    y = torch.arange(n) % k
    x = centers[y] + torch.randn(n, d, generator=g)
    model = make_model("mlp", (d,), k, random_state=0)
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean().item() < 0.5  # near chance before training
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):  # ~100% after ~30 steps; 60 keeps a margin and the test < 1 s
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc > 0.9


def test_tiny_fit_small_cnn_learns_digit_like_images():
    # class-specific 8x8 stroke patterns (bars at different positions) + noise
    g = torch.Generator().manual_seed(1)
    n, k = 200, 4
    protos = torch.zeros(k, 1, 8, 8)
    protos[0, 0, 2, :] = 1  # horizontal bar
    protos[1, 0, :, 2] = 1  # vertical bar
    protos[2, 0, range(8), range(8)] = 1  # diagonal
    protos[3, 0, 2:6, 2:6] = 1  # block
    y = torch.arange(n) % k
    x = protos[y] + 0.2 * torch.randn(n, 1, 8, 8, generator=g)
    model = make_model("small_cnn", (1, 8, 8), k, random_state=0)
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean().item() < 0.5  # near chance before training
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):  # ~100% after ~15 steps
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc > 0.9
