"""services/read_ahead.py: a stream's next items made in a thread, bounded, stopped with its caller."""

from __future__ import annotations

import contextlib
import threading

import pytest

from myapi.services.read_ahead import read_ahead


def threads_named(name: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == name]


def test_items_arrive_in_order_the_first_made_by_the_caller_the_rest_by_the_thread():
    made_in = []

    def items():
        for number in range(5):
            made_in.append(threading.current_thread().name)
            yield number

    assert list(read_ahead(items(), name="test-ahead")) == [0, 1, 2, 3, 4]
    assert made_in == [threading.current_thread().name] + ["test-ahead"] * 4
    assert list(read_ahead(iter([]), name="test-ahead")) == []
    assert not threads_named("test-ahead")


def test_an_error_in_the_producer_is_raised_in_the_caller():
    def failing():
        yield 1
        yield 2
        raise ValueError("bad upload")

    with pytest.raises(ValueError, match="bad upload"):
        list(read_ahead(failing(), name="test-ahead"))
    assert not threads_named("test-ahead")


def test_the_producer_stops_and_closes_its_items_when_the_caller_stops():
    produced, closed = [], []

    def endless():
        try:
            while True:
                produced.append(len(produced))
                yield produced[-1]
        finally:
            closed.append(threading.current_thread().name)

    items = read_ahead(endless(), depth=2, name="test-ahead")
    with pytest.raises(RuntimeError), contextlib.closing(items):
        for item in items:
            if item == 3:
                raise RuntimeError("the database write failed")
    assert not threads_named("test-ahead")
    assert closed == ["test-ahead"]  # the generator's finally ran, in the producer, before close() returned
    count = len(produced)
    assert count <= 3 + 1 + 2 + 1  # taken, in the caller's hands, queued, being put
    threading.Event().wait(0.3)
    assert len(produced) == count  # the producer has stopped


def test_a_caller_that_stops_after_the_first_item_starts_no_thread_and_closes_the_items():
    closed = []

    def items():
        try:
            yield from range(10)
        finally:
            closed.append(threading.current_thread().name)

    ahead = read_ahead(items(), name="test-ahead")
    assert next(ahead) == 0
    ahead.close()
    assert closed == [threading.current_thread().name]
    assert not threads_named("test-ahead")
