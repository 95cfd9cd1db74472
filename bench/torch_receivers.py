"""Receivers' networks written independently of the engine, trained on a matching archive and on a
random real subset of the same size (seeded numpy draw, 10 a class like the archive), each by the
same ordinary loop with the README's augmentation; prints test accuracy and balanced accuracy (the
mean of the classes' recalls), mean ± std over runs.

    python3 bench/torch_receivers.py ARCHIVE.zip DATA.npz [KINDS] [RUNS]

DATA.npz holds train_images/train_labels and test_images/test_labels (uint8, [N, s, s]).
KINDS, comma-separated:
  lenet_adam            LeNet, Adam 1e-3, 300 passes (the engine's default recipe)
  convin32_adam_e300    ConvNet width 32, depth 3, instance norm with a learned scale (PyTorch's
                        GroupNorm(w, w), as the field's code), Adam 1e-3, 300 passes
  convin32_sgd_e300     the same with SGD 0.01, momentum 0.9, weight decay 5e-4, lr ÷ 10 halfway
  convin128_sgd         width 128 and 1,000 passes (the field's evaluation; slow on a CPU)
  resnet8_adam          a small ResNet: a 3x3 stem of 16 channels, three basic blocks (two 3x3
                        convolutions and a skip) of 16, 32 and 64 channels, the last two at stride
                        2, batch norm, global average pooling; Adam 1e-3, 300 passes
  …_nonorm              without the norm
Needs torch, numpy and safetensors.
"""
import io, json, os, re, sys, zipfile, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from safetensors.torch import load
torch.set_num_threads(2)
arch, data = sys.argv[1], sys.argv[2]
which = sys.argv[3].split(",") if len(sys.argv) > 3 else ["lenet_adam", "convin32_adam_e300"]
reps = int(sys.argv[4]) if len(sys.argv) > 4 else 2
z = zipfile.ZipFile(arch); m = json.loads(z.read("manifest.json")); t = load(z.read("distilled.safetensors"))
images, labels = t["images"], t["labels"]
mean, std = m["normalization"]["mean"], m["normalization"]["std"]
d = np.load(data)
norm = lambda a: (torch.as_tensor(a).float()[:, None] / 255 - mean) / std
xt, yt = norm(d["test_images"]), torch.as_tensor(d["test_labels"].reshape(-1)).long()
tr, ytr = d["train_images"], d["train_labels"].reshape(-1)
C = labels.shape[1]; per = len(images) // C; size = images.shape[-1]
readme = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")).read()
code = readme[readme.index("def augment(x):"):readme.index('\nif "recipe" in m:')]
exec(code)
class LeNet(nn.Module):
    def __init__(s, w=1, size=28):
        super().__init__(); a = (size // 2 - 4) // 2
        s.c1 = nn.Conv2d(1, 6*w, 5, padding=2); s.c2 = nn.Conv2d(6*w, 16*w, 5)
        s.f1 = nn.Linear(16*w*a*a, 120*w); s.f2 = nn.Linear(120*w, 84*w); s.f3 = nn.Linear(84*w, C)
    def forward(s, x):
        x = F.max_pool2d(F.relu(s.c1(x)), 2); x = F.max_pool2d(F.relu(s.c2(x)), 2).flatten(1)
        return s.f3(F.relu(s.f2(F.relu(s.f1(x)))))
class ConvIn(nn.Module):
    def __init__(s, w=128, depth=3, size=28, norm=True):
        super().__init__(); L = []; c = 1
        for _ in range(depth):
            L += [nn.Conv2d(c, w, 3, padding=1)] + ([nn.GroupNorm(w, w, affine=True)] if norm else []) + [nn.ReLU(), nn.AvgPool2d(2)]; c = w
        s.f = nn.Sequential(*L); s.fc = nn.Linear(w * (size >> depth) ** 2, C)
    def forward(s, x): return s.fc(s.f(x).flatten(1))
class Block(nn.Module):
    def __init__(s, cin, cout, stride):
        super().__init__()
        s.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False); s.b1 = nn.BatchNorm2d(cout)
        s.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False); s.b2 = nn.BatchNorm2d(cout)
        s.skip = nn.Sequential() if stride == 1 and cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    def forward(s, x): return F.relu(s.b2(s.c2(F.relu(s.b1(s.c1(x))))) + s.skip(x))
class ResNet8(nn.Module):
    def __init__(s):
        super().__init__()
        s.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        s.blocks = nn.Sequential(Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2)); s.fc = nn.Linear(64, C)
    def forward(s, x): return s.fc(s.blocks(s.stem(x)).mean((2, 3)))
def train(kind, x, y, seed):
    torch.manual_seed(seed)
    if kind == "resnet8_adam":
        net = ResNet8(); opt = torch.optim.Adam(net.parameters(), 1e-3); ep = 300; sched = None
    elif kind == "lenet_adam":
        net = LeNet(size=size); opt = torch.optim.Adam(net.parameters(), 1e-3); ep = 300; sched = None
    else:
        w = 128 if "128" in kind else 32
        net = ConvIn(w, size=size, norm="nonorm" not in kind)
        passes = re.search(r"_e(\d+)", kind)                # e.g. convin32_adam_e300_nonorm
        ep = int(passes.group(1)) if passes else 1000
        if "adam" in kind:
            opt = torch.optim.Adam(net.parameters(), 1e-3); sched = None
        else:
            opt = torch.optim.SGD(net.parameters(), 0.01, momentum=0.9, weight_decay=5e-4)
            sched = torch.optim.lr_scheduler.MultiStepLR(opt, [ep // 2], 0.1)
    b = min(256, len(x))
    net.train()
    for e in range(ep):
        o = torch.randperm(len(x))
        for k in range(len(x) // b):
            i = o[k*b:(k+1)*b]; xb = augment(x[i])
            loss = -(F.log_softmax(net(xb), 1) * y[i]).sum() / b
            opt.zero_grad(); loss.backward(); opt.step()
        if sched: sched.step()
    net.eval()
    with torch.no_grad():
        hit = (torch.cat([net(xt[s:s+1000]).argmax(1) for s in range(0, len(xt), 1000)]) == yt).float()
    return hit.mean().item() * 100, np.mean([hit[yt == c].mean().item() for c in range(C)]) * 100
rng = np.random.default_rng(0)
sub = np.concatenate([rng.choice(np.where(ytr == c)[0], per, replace=False) for c in range(C)])
xs, ys = norm(tr[sub]), F.one_hot(torch.as_tensor(ytr[sub]).long(), C).float()
for kind in which:
    a = np.array([train(kind, images, labels, s) for s in range(reps)])
    b = np.array([train(kind, xs, ys, s) for s in range(reps)])
    f = lambda r, k: f"{r[:, k].mean():.2f} ± {r[:, k].std():.2f}"
    print(f"{kind}: distilled {f(a, 0)} (balanced {f(a, 1)})  random subset {f(b, 0)} (balanced {f(b, 1)})", flush=True)
