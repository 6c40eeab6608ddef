"""A DDP rank releases its process group before the interpreter shuts down (see
`normlab.distributed`): once `release_process_group` returns, the gloo worker threads are gone,
also while a reference cycle holds the group (as under Lightning), so none is left to be torn down
during finalisation (the SIGABRT the release prevents)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# One process, a world of one: the group's worker threads are OS threads (/proc/self/task), which
# Python's `threading` does not see. The DDP wrapper sits in a reference cycle, as under Lightning.
RANK = """
import os, tempfile, time
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
release_process_group()
deadline = time.monotonic() + 30  # a joined thread may be listed a moment longer
while os_threads() > before and time.monotonic() < deadline:
    time.sleep(0.01)
print(before, during, os_threads(), dist.is_initialized())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts threads in /proc")
def test_releasing_the_process_group_joins_its_worker_threads() -> None:
    done = subprocess.run([sys.executable, "-c", RANK], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    before, during, released, initialized = done.stdout.split()
    assert int(during) > int(before)  # the group started worker threads
    assert int(released) == int(before) and initialized == "False"
