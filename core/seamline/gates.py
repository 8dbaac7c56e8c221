"""Reads held back until the tasks that need them are near.

A dask scheduler runs any task that is ready when a thread is idle. The tasks that read
an input (a Zarr or GeoTIFF block, a block of random numbers) depend on no other task,
only on data (the open file), so they are always ready: a thread waiting for the
engine's next row of tiles would read block after block far ahead, and hold them all.
:func:`gated` takes an input's graph and makes each such read also wait for some
*marker* keys (tasks that carry no data), given per block of the input: a block's reads
then start only once the markers of the first task that needs the block are done. Each
read still runs once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dask.array as da
from dask.core import get_dependencies, istask
from dask.typing import Key

__all__ = ["gated"]


def _after(value: Any, *_: None) -> Any:
    """*value*, once the markers passed after it are done."""
    return value


def _is_task(entry: Any) -> bool:
    """Whether a graph entry is a task, not data (an array, a file's handle)."""
    try:
        from dask._task_spec import DataNode, GraphNode
    except ImportError:  # dask before 2024.12: tasks are tuples
        return istask(entry)
    if isinstance(entry, DataNode):
        return False
    return isinstance(entry, GraphNode) or istask(entry)


def _gate(key: Key, task: Any, markers: Sequence[Key]) -> Any:
    try:
        from dask._task_spec import GraphNode, Task, TaskRef
    except ImportError:  # dask before 2024.12
        return (_after, task, *markers)
    if isinstance(task, GraphNode):
        return Task(key, _after, task, *(TaskRef(m) for m in markers))
    return (_after, task, *markers)


def gated(arrays: Sequence[da.Array], markers: Mapping[Key, Sequence[Key]]) -> dict:
    """The graphs of *arrays*, with each read waiting for the markers of the first block that needs it.

    Parameters
    ----------
    arrays : sequence of dask.array.Array
        The inputs.
    markers : mapping
        For some block keys of the arrays, the marker keys that its reads wait for, in
        the order the blocks are needed: a read that feeds several blocks waits for the
        markers of the first one.

    Returns
    -------
    dict
        The arrays' tasks, every read among them gated; the markers' own tasks are not in it.
    """
    graph: dict = {}
    for array in arrays:
        graph.update(dict(array.__dask_graph__()))
    seen: set = set()
    for block, waits in markers.items():
        stack: list[Key] = [block]
        while stack:
            key = stack.pop()
            if key in seen or key not in graph:
                continue
            seen.add(key)
            task = graph[key]
            if not _is_task(task):
                continue
            upstream = [d for d in get_dependencies(graph, key) if _is_task(graph.get(d))]
            if upstream:
                stack.extend(upstream)
            elif waits:  # a read: it depends on data alone
                graph[key] = _gate(key, task, waits)
    return graph
