"""A DDP rank releases its process group before the interpreter shuts down (see
`normlab.distributed`): Lightning's own exit handler (`destroy_process_group`) leaves the gloo
worker threads running while a reference cycle holds the group, to be torn down during
finalisation (the SIGABRT the release prevents); `release_process_group` joins them."""

from __future__ import annotations

import subprocess
import sys

import pytest

# One process, a world of one: the group's worker threads are OS threads (/proc/self/task), which
# Python's `threading` does not see. The DDP wrapper sits in a reference cycle, as under Lightning.
RANK = """
import os, tempfile
import torch, torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from normlab.distributed import release_process_group

def os_threads():
    return len(os.listdir("/proc/self/task"))

before = os_threads()
store = dist.FileStore(os.path.join(tempfile.mkdtemp(), "store"), 1)
dist.init_process_group("gloo", store=store, rank=0, world_size=1)
class Holder: pass
holder = Holder()
holder.ddp, holder.me = DistributedDataParallel(nn.Linear(3, 2)), holder
out = [torch.empty(())]
dist.all_gather(out, torch.ones(()))  # what on_train_end's divergence check does last
del holder, out
during = os_threads()
dist.destroy_process_group()  # what Lightning's exit handler does
destroyed = os_threads()
release_process_group()
print(before, during, destroyed, os_threads())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts threads in /proc")
def test_releasing_the_process_group_joins_the_threads_destroying_it_leaves() -> None:
    done = subprocess.run([sys.executable, "-c", RANK], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    before, during, destroyed, released = map(int, done.stdout.split())
    assert during > before  # the group started worker threads
    # if this stops holding, Lightning's own handler suffices and `normlab.distributed` can go
    assert destroyed == during
    assert released == before
