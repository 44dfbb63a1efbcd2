"""The in-memory batch loader: order, shards, its place in the epoch, device pass-through."""

import pytest
import torch

from genlab.data.loaders import InMemoryBatchLoader
from genlab.data.toy2d import RingDataModule


def collect(loader: InMemoryBatchLoader, epoch: int) -> torch.Tensor:
    loader.set_epoch(epoch)
    return torch.cat([batch[0] for batch in loader])


def test_loader_yields_every_sample_once_in_a_new_order_each_epoch():
    data = torch.arange(100)
    loader = InMemoryBatchLoader((data,), batch_size=10, seed=3)
    first, second = collect(loader, 0), collect(loader, 1)
    assert sorted(first.tolist()) == list(range(100)) == sorted(second.tolist())
    assert not torch.equal(first, second)
    again = InMemoryBatchLoader((data,), batch_size=10, seed=3)
    assert torch.equal(collect(again, 1), second)
    assert loader.sampler is loader and len(loader) == 10


def test_loader_shards_disjointly_across_ranks():
    data = torch.arange(103)
    shards = [
        collect(InMemoryBatchLoader((data,), batch_size=5, seed=1, rank=r, world_size=2), 4)
        for r in (0, 1)
    ]
    assert len(shards[0]) == len(shards[1]) == 50
    assert not set(shards[0].tolist()) & set(shards[1].tolist())


def test_loader_rejects_a_batch_larger_than_the_data():
    with pytest.raises(ValueError, match="smaller data.batch_size"):
        InMemoryBatchLoader((torch.arange(10),), batch_size=11)


def test_a_resumed_loader_goes_on_after_the_batches_training_completed():
    """The place a checkpoint keeps is the trainer's count of completed batches, not the
    batches handed out (a batch fetched but not trained on is trained on after a resume);
    the resumed pass gives the rest of the same order."""
    data = torch.arange(40)
    completed = [0]
    loader = InMemoryBatchLoader((data,), batch_size=4, seed=5, completed=lambda: completed[0])
    loader.set_epoch(2)
    whole = [batch[0] for batch in loader]
    iterator = iter(loader)
    for _ in range(4):  # four batches handed out, three trained on
        next(iterator)
    completed[0] = 3
    state = loader.state_dict()
    assert state == {"epoch": 2, "served": 3}
    resumed = InMemoryBatchLoader((data,), batch_size=4, seed=5)
    resumed.set_epoch(2)
    resumed.load_state_dict(state)
    rest = [batch[0] for batch in resumed]
    assert len(rest) == 7 and all(torch.equal(a, b) for a, b in zip(rest, whole[3:], strict=True))
    again = [batch[0] for batch in resumed]  # the next pass is whole again
    assert len(again) == 10


def test_batches_already_on_the_device_are_not_walked_again():
    data = RingDataModule(batch_size=4)
    batch = (torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))
    assert data.transfer_batch_to_device(batch, torch.device("cpu"), 0) is batch
    # anything else goes through Lightning's own transfer
    nested = {"x": torch.zeros(2)}
    moved = data.transfer_batch_to_device(nested, torch.device("cpu"), 0)
    assert moved is not nested and torch.equal(moved["x"], nested["x"])


def test_unequal_domains_resumed_at_an_epoch_end_start_the_next_pass_whole():
    from genlab.data.loaders import ZippedBatchLoader

    short = InMemoryBatchLoader((torch.arange(20), torch.arange(20)), batch_size=4, seed=1)
    long = InMemoryBatchLoader((torch.arange(40), torch.arange(40)), batch_size=4, seed=2)
    zipped = ZippedBatchLoader(short, long)
    batches = list(zipped)
    assert len(batches) == len(zipped) == 5
    resumed = ZippedBatchLoader(
        InMemoryBatchLoader((torch.arange(20), torch.arange(20)), batch_size=4, seed=1),
        InMemoryBatchLoader((torch.arange(40), torch.arange(40)), batch_size=4, seed=2),
    )
    resumed.load_state_dict(zipped.state_dict())  # saved after the pass ended
    for loader in (resumed, zipped):
        loader.set_epoch(1)
    assert all(
        torch.equal(x, y)
        for p, q in zip(resumed, zipped, strict=True)
        for x, y in zip(p, q, strict=True)
    )
