"""Train a small CNN on scikit-learn's 8x8 digits with minilinen, TrainState and optax.

    .venv/bin/python examples/digits.py [--epochs N] [--batch-size B] [--seed S]
                                        [--workdir DIR] [--resume]

The data ships with scikit-learn (no download). The script prints the model
summary, trains with a progress bar per epoch, saves a checkpoint after every
epoch, restores the last one into a freshly initialized state and checks that it
scores exactly the same test accuracy, and writes a plot of loss and accuracy.
``--resume`` continues from the newest checkpoint in ``--workdir``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import minilinen as nn
from minilinen.training import checkpoints, train_state

CKPT_PREFIX = "checkpoint_"  # a checkpoint's step is the number of epochs it has seen


class CNN(nn.Module):
    """Two 3x3 conv blocks (Conv, BatchNorm, relu), a pool, and a two-layer head."""

    num_classes: int = 10
    dropout_rate: float = 0.3

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        for features in (32, 64):
            x = nn.Conv(features, kernel_size=(3, 3))(x)
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
            x = nn.relu(x)
        x = nn.max_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(128)(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes)(x)


class TrainState(train_state.TrainState):
    """TrainState plus BatchNorm's running statistics."""

    batch_stats: Any


def load_data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The 1,797 digits as NHWC images in [0, 1], split 80/20 with every class in proportion."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    labels = digits.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.2, random_state=seed, stratify=labels
    )
    return x_train, y_train, x_test, y_test


def create_state(seed: int, learning_rate: float, steps: int, example: np.ndarray) -> TrainState:
    """A fresh model and optimizer: adamw with a one-cycle cosine schedule."""
    model = CNN()
    variables = model.init(jax.random.PRNGKey(seed), example[:1], train=False)
    schedule = optax.cosine_onecycle_schedule(steps, peak_value=learning_rate)
    return TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        tx=optax.adamw(schedule, weight_decay=1e-4),
        batch_stats=variables["batch_stats"],
    )


@jax.jit
def train_step(
    state: TrainState, images: jax.Array, labels: jax.Array, dropout_key: jax.Array
) -> tuple[TrainState, jax.Array]:
    """One optimizer step on a batch; returns the new state and the batch loss."""
    key = jax.random.fold_in(dropout_key, state.step)

    def loss_fn(params: Any) -> tuple[jax.Array, Any]:
        logits, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats},
            images,
            train=True,
            rngs={"dropout": key},
            mutable=["batch_stats"],
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, updates

    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=updates["batch_stats"])
    return state, loss


@jax.jit
def predict(state: TrainState, images: jax.Array) -> jax.Array:
    """Class predictions in inference mode (running statistics, no dropout)."""
    logits = state.apply_fn(
        {"params": state.params, "batch_stats": state.batch_stats}, images, train=False
    )
    return jnp.argmax(logits, axis=-1)


def accuracy(state: TrainState, images: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of ``images`` classified correctly."""
    return float(np.mean(np.asarray(predict(state, images)) == labels))


def train_epoch(
    state: TrainState,
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    dropout_key: jax.Array,
    desc: str,
) -> tuple[TrainState, float]:
    """One pass over the shuffled training set; returns the state and the mean loss."""
    from tqdm import tqdm

    order = rng.permutation(len(images))
    steps = len(images) // batch_size  # drop the ragged last batch: one jit shape
    losses = []
    with tqdm(range(steps), desc=desc, unit="step", leave=True, file=sys.stdout) as bar:
        for i in bar:
            idx = order[i * batch_size : (i + 1) * batch_size]
            state, loss = train_step(state, images[idx], labels[idx], dropout_key)
            losses.append(loss)
            if i % 10 == 0 or i == steps - 1:
                bar.set_postfix(loss=f"{float(loss):.4f}")
    return state, float(np.mean(jax.device_get(losses)))


def plot(history: dict[str, list[float]], path: str) -> None:
    """Training loss and test accuracy per epoch, side by side, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(history["loss"]) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, history["loss"], marker="o")
    ax_loss.set(title="training loss", xlabel="epoch", ylabel="cross-entropy", yscale="log")
    ax_acc.plot(epochs, [100 * a for a in history["test_accuracy"]], marker="o", color="C1")
    ax_acc.set(title="test accuracy", xlabel="epoch", ylabel="%")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=15, help="total epochs to train")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-3, help="peak learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seeds the split, init and shuffles")
    parser.add_argument(
        "--workdir",
        default=os.path.join(tempfile.gettempdir(), "minilinen-digits"),
        help="where checkpoints, the history and the plot go",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the newest checkpoint in --workdir"
    )
    parser.add_argument(
        "--train-subset", type=int, default=None, help="train on only this many images (tests)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the demo; returns its results (used by the tests)."""
    args = parse_args(argv)
    start = time.perf_counter()
    x_train, y_train, x_test, y_test = load_data(args.seed)
    if args.train_subset:
        x_train, y_train = x_train[: args.train_subset], y_train[: args.train_subset]
    steps_per_epoch = len(x_train) // args.batch_size
    total_steps = max(args.epochs * steps_per_epoch, 1)
    print(f"digits: {len(x_train)} training and {len(x_test)} test images of 8x8 pixels")

    state = create_state(args.seed, args.learning_rate, total_steps, x_train)
    print(CNN().tabulate(jax.random.PRNGKey(args.seed), x_train[:1], train=False))

    ckpt_dir = os.path.join(os.path.abspath(args.workdir), "checkpoints")
    history_path = os.path.join(args.workdir, "history.json")
    history: dict[str, list[float]] = {"loss": [], "test_accuracy": []}
    first_epoch = 0
    if args.resume:
        latest = checkpoints.latest_checkpoint(ckpt_dir, prefix=CKPT_PREFIX)
        if latest is None:
            print(f"--resume: no checkpoint in {ckpt_dir}; starting from scratch")
        else:
            state = checkpoints.restore_checkpoint(latest, target=state)
            first_epoch = int(os.path.basename(latest)[len(CKPT_PREFIX) :])
            if os.path.exists(history_path):
                with open(history_path) as f:
                    history = {k: v[:first_epoch] for k, v in json.load(f).items()}
            print(f"resumed from {latest} (epoch {first_epoch}, step {int(state.step)})")

    data_rng = np.random.default_rng(args.seed)
    for _ in range(first_epoch):  # the same shuffles as an uninterrupted run
        data_rng.permutation(len(x_train))
    dropout_key = jax.random.PRNGKey(args.seed + 1)
    for epoch in range(first_epoch + 1, args.epochs + 1):
        state, loss = train_epoch(
            state,
            x_train,
            y_train,
            args.batch_size,
            data_rng,
            dropout_key,
            desc=f"epoch {epoch:2d}/{args.epochs}",
        )
        test_acc = accuracy(state, x_test, y_test)
        history["loss"].append(loss)
        history["test_accuracy"].append(test_acc)
        print(f"epoch {epoch:2d}: train loss {loss:.4f}, test accuracy {100 * test_acc:.2f}%")
        # overwrite=True: a fresh run in an old workdir replaces its checkpoints.
        checkpoints.save_checkpoint(
            ckpt_dir, state, step=epoch, prefix=CKPT_PREFIX, keep=3, overwrite=True
        )
        os.makedirs(args.workdir, exist_ok=True)
        with open(history_path, "w") as f:
            json.dump(history, f)

    final_acc = accuracy(state, x_test, y_test)
    latest = checkpoints.latest_checkpoint(ckpt_dir, prefix=CKPT_PREFIX)
    fresh = create_state(args.seed + 1, args.learning_rate, total_steps, x_train)
    restored = checkpoints.restore_checkpoint(ckpt_dir, target=fresh, prefix=CKPT_PREFIX)
    restored_acc = accuracy(restored, x_test, y_test)
    same_params = all(
        np.array_equal(a, b)
        for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(restored))
    )
    print(
        f"restored {latest} into a fresh state: test accuracy {100 * restored_acc:.2f}% "
        f"({'identical' if restored_acc == final_acc and same_params else 'DIFFERENT'})"
    )

    plot_path = os.path.join(os.path.abspath(args.workdir), "digits_training.png")
    plot(history, plot_path)
    print(f"plot of loss and accuracy: {plot_path}")
    elapsed = time.perf_counter() - start
    print(f"final test accuracy {100 * final_acc:.2f}% in {elapsed:.1f} s")
    if restored_acc != final_acc or not same_params:
        raise SystemExit("the restored checkpoint does not reproduce the trained state")
    return {
        "test_accuracy": final_acc,
        "restored_accuracy": restored_acc,
        "history": history,
        "checkpoint": latest,
        "plot": plot_path,
        "seconds": elapsed,
    }


if __name__ == "__main__":
    main()
