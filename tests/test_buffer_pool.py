"""The host-buffer pool reuses every returned buffer, several per shape, up to its size limit."""

from __future__ import annotations

import torch

from trackers.writers.buffers import BufferPool


def test_buffers_of_the_same_shape_are_all_reused():
    pool = BufferPool()
    first, second = pool.copy(torch.ones(4, 4)), pool.copy(torch.full((4, 4), 2.0))
    addresses = {first.data_ptr(), second.data_ptr()}
    pool.give_back(first)
    pool.give_back(second)
    again = [pool.copy(torch.zeros(4, 4)), pool.copy(torch.zeros(4, 4))]
    assert {t.data_ptr() for t in again} == addresses
    assert all(torch.equal(t, torch.zeros(4, 4)) for t in again)
    assert pool.pooled_bytes == 0


def test_the_pool_keeps_no_more_than_its_limit():
    pool = BufferPool(max_bytes=100)
    buffers = [pool.copy(torch.ones(10)) for _ in range(4)]  # 40 bytes each
    for buffer in buffers:
        pool.give_back(buffer)
    assert pool.pooled_bytes == 80
