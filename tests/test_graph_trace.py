"""GraphTrace on every model of seed 001's list and the tutorial CNN, read back with TensorBoard's reader."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision
from conftest import load_run
from torch import nn

from callbacks import GraphTrace
from trackers import LooptrackWarning, Tracker
from trackers.tools.demo import TutorialNet


# --- the seed's models, modernised -------------------------------------------------------------
class LinearInLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(3, 5)

    def forward(self, x):
        return self.l(x)


class MultipleInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.Linear_1 = nn.Linear(3, 5)

    def forward(self, x, y):
        return self.Linear_1(x + y)


class MultipleOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.Linear_1 = nn.Linear(3, 5)
        self.Linear_2 = nn.Linear(3, 7)

    def forward(self, x):
        return self.Linear_1(x), self.Linear_2(x)


class MultipleOutputShared(nn.Module):
    def __init__(self):
        super().__init__()
        self.Linear_1 = nn.Linear(3, 5)

    def forward(self, x):
        return self.Linear_1(x), self.Linear_1(x)


class SimpleModel(nn.Module):
    def forward(self, x):
        return x * 2


class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)

    def forward(self, x):
        residual = x
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += residual
        return F.relu(out)


class Net1(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)
        self.bn = nn.BatchNorm2d(20)

    def forward(self, x):
        x = F.max_pool2d(self.conv1(x), 2)
        x = F.relu(x) + F.relu(-x)
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = self.bn(x)
        x = x.view(-1, 320)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, training=self.training)
        return F.softmax(self.fc2(x), dim=1)


class Net2(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.view(-1, 320)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, training=self.training)
        return F.log_softmax(self.fc2(x), dim=1)


class SiameseNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.cnn1 = Net1()

    def forward(self, input1, input2):
        return self.cnn1(input1), self.cnn1(input2)


class RNN(nn.Module):
    def __init__(self, n_categories=10, input_size=100, hidden_size=128, output_size=10):
        super().__init__()
        self.i2h = nn.Linear(n_categories + input_size + hidden_size, hidden_size)
        self.i2o = nn.Linear(n_categories + input_size + hidden_size, output_size)
        self.o2o = nn.Linear(hidden_size + output_size, output_size)
        self.dropout = nn.Dropout(0.1)
        self.softmax = nn.LogSoftmax(dim=1)

    def forward(self, category, input, hidden):
        combined = torch.cat((category, input, hidden), 1)
        hidden = self.i2h(combined)
        output = self.o2o(torch.cat((hidden, self.i2o(combined)), 1))
        return self.softmax(self.dropout(output)), hidden, input


MNIST = torch.rand(13, 1, 28, 28)
IMAGE = torch.rand(1, 3, 224, 224)
CASES = {
    # name: (model factory, inputs, op types expected, a module group expected)
    "LinearInLinear": (LinearInLinear, (torch.zeros(1, 3),), {"Linear"}, "l"),
    "MultipleInput": (MultipleInput, (torch.zeros(1, 3), torch.zeros(1, 3)), {"Linear", "add"}, "Linear_1"),
    "MultipleOutput": (MultipleOutput, (torch.zeros(1, 3),), {"Linear"}, "Linear_2"),
    "MultipleOutput_shared": (MultipleOutputShared, (torch.zeros(1, 3),), {"Linear"}, "Linear_1"),
    "SimpleModel": (SimpleModel, (torch.zeros(1, 2, 3),), {"mul"}, None),
    "BasicBlock": (lambda: BasicBlock(3, 3), (torch.rand(1, 3, 64, 64),), {"Conv2d", "BatchNorm2d", "relu"}, "bn2"),
    "Net1": (Net1, (MNIST,), {"Conv2d", "Dropout2d", "BatchNorm2d", "softmax"}, "conv2_drop"),
    "Net2": (Net2, (MNIST,), {"Conv2d", "Linear", "log_softmax"}, "fc1"),
    "SiameseNetwork": (SiameseNetwork, (MNIST, MNIST), {"Conv2d", "Linear"}, "cnn1/conv1"),
    "RNN": (RNN, (torch.rand(1, 10), torch.rand(1, 100), torch.rand(1, 128)), {"Linear", "cat", "LogSoftmax"}, "i2h"),
    "LSTM": (
        lambda: nn.LSTM(3, 3),
        (torch.randn(1, 1, 3), (torch.randn(1, 1, 3), torch.randn(1, 1, 3))),
        {"lstm"},
        "weight_ih_l0",
    ),
    "tutorial CNN": (TutorialNet, (torch.rand(4, 1, 28, 28),), {"Conv2d", "MaxPool2d", "Linear"}, "fc3"),
    "resnet18": (
        lambda: torchvision.models.resnet18(weights=None),
        (IMAGE,),
        {"Conv2d", "BatchNorm2d", "add"},
        "layer1/0/conv1",
    ),
    "alexnet": (lambda: torchvision.models.alexnet(weights=None), (IMAGE,), {"Conv2d", "Linear"}, "features/0"),
}
SLOW_CASES = {
    "vgg19": (lambda: torchvision.models.vgg19(weights=None), (IMAGE,), {"Conv2d", "Linear"}, "classifier/6"),
    "densenet121": (
        lambda: torchvision.models.densenet121(weights=None),
        (IMAGE,),
        {"Conv2d", "cat"},
        "features/denseblock1/denselayer1/conv1",
    ),
}


def _graph_through_a_run(tmp_path, model, inputs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Tracker(model, callbacks=[GraphTrace()], writer=str(tmp_path)) as tracker:

            @tracker.train_step
            def step(*args):
                model(*args)

            step(*inputs)
            step(*inputs)
    return load_run(tmp_path).Graph(), [str(w.message) for w in caught]


def _check(graph, ops, group):
    names = [n.name for n in graph.node]
    assert len(names) == len(set(names)) > 0
    assert ops <= {n.op for n in graph.node}, {n.op for n in graph.node}
    assert sum(n.op == "IO Node" and n.name.startswith("input/") for n in graph.node) >= 1
    if group is not None:
        assert any(name == group or name.startswith(group + "/") for name in names), names[:20]
    computed = [n for n in graph.node if n.op not in ("IO Node", "Parameter")]
    assert computed and all("_output_shapes" in n.attr for n in computed)
    known = {n.name for n in graph.node}
    assert all(i in known for n in graph.node for i in n.input)  # every edge joins two nodes


@pytest.mark.parametrize("name", list(CASES))
def test_graph_of_each_seed_model(tmp_path, name):
    factory, inputs, ops, group = CASES[name]
    graph, messages = _graph_through_a_run(tmp_path, factory(), inputs)
    _check(graph, ops, group)
    assert not [m for m in messages if "TorchScript" in m or "torch.jit" in m]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SLOW_CASES))
def test_graph_of_the_big_seed_models(tmp_path, name):
    factory, inputs, ops, group = SLOW_CASES[name]
    graph, _ = _graph_through_a_run(tmp_path, factory(), inputs)
    _check(graph, ops, group)


def test_shapes_on_the_edges(tmp_path):
    graph, _ = _graph_through_a_run(tmp_path, TutorialNet(), (torch.rand(4, 1, 28, 28),))
    by_name = {n.name: n for n in graph.node}
    shape = [d.size for d in by_name["fc3"].attr["_output_shapes"].list.shape[0].dim]
    assert shape == [4, 10]
    assert by_name["conv1"].attr["dtype"].s == b"float32"


def test_wrong_input_gives_one_warning_and_training_goes_on(tmp_path):
    model = torchvision.models.resnet18(weights=None)
    wrong = torch.rand(1, 1, 64, 64)  # the seed's error case: one channel for a 3-channel model
    with pytest.warns(
        LooptrackWarning, match=r"GraphTrace: could not trace ResNet on inputs of shape \(1, 1, 64, 64\)"
    ):
        with Tracker(model, callbacks=[GraphTrace(example_input=wrong)], writer=str(tmp_path)) as tracker:
            step = tracker.train_step(lambda x: model(x).sum())
            for _ in range(2):
                step(torch.rand(1, 3, 64, 64))
    assert tracker.step == 1
    assert not load_run(tmp_path).Tags()["graph"]


def test_the_model_is_left_as_it_was(tmp_path):
    model = Net1()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    with Tracker(model, callbacks=[GraphTrace(example_input=MNIST)], writer=str(tmp_path)):
        pass
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    assert load_run(tmp_path).Tags()["graph"]


def test_traced_once_per_run_and_in_the_default_set(tmp_path):
    model = TutorialNet()
    with Tracker(model, writer=str(tmp_path)) as tracker:
        assert any(isinstance(c, GraphTrace) for c in tracker.callbacks.callbacks)
        step = tracker.train_step(lambda x: model(x).sum())
        for _ in range(5):
            step(torch.rand(2, 1, 28, 28))
    graphs = [
        e
        for e in __import__("tensorboard.backend.event_processing.event_file_loader", fromlist=["x"])
        .EventFileLoader(str(next(tmp_path.glob("events.*"))))
        .Load()
        if e.HasField("graph_def")
    ]
    assert len(graphs) == 1


def test_jit_only_when_asked(tmp_path):
    model = LinearInLinear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Tracker(model, callbacks=[GraphTrace(use_jit=True)], writer=str(tmp_path)) as tracker:
            tracker.train_step(lambda x: model(x).sum())(torch.zeros(1, 3))
    assert load_run(tmp_path).Graph().node
