"""A tiny PyTorch classifier with templates, a choice of layer objects among them."""

import torch
from sklearn.datasets import load_digits
from torch import nn


def data():
    digits = load_digits()
    x = torch.tensor(digits.data[:400] / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target[:400], dtype=torch.long)
    return x[:300], y[:300], x[300:], y[300:]


def validation_loss(net, x_val, y_val):
    net.eval()
    with torch.no_grad():
        return nn.functional.cross_entropy(net(x_val), y_val).item()


def create_model(x_train, y_train, x_val, y_val):
    torch.manual_seed(0)
    hidden = {{choice([16, 32])}}
    net = nn.Sequential(nn.Linear(64, hidden), {{choice([nn.ReLU(), nn.Tanh()], name="activation")}}, nn.Linear(hidden, 10))
    optimizer = torch.optim.Adam(net.parameters(), lr={{loguniform(1e-3, 1e-1)}})
    for _ in range(15):
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(x_train), y_train).backward()
        optimizer.step()
    return {"loss": validation_loss(net, x_val, y_val), "model": net}
