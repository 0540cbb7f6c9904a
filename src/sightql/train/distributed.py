"""Training over several processes started by ``torchrun``: the process group and what ranks say to each other.

Rank 0 is the only process that opens the warehouse. The others learn the run from a JSON
*plan* that rank 0 broadcasts as a uint8 tensor (no pickle), read the rows rank 0 copied for
them (:mod:`sightql.train.shared_rows`), and wait for rank 0's JSON *outcome* at the end.

The process group is Gloo for CPU tensors and, where CUDA is usable, NCCL for GPU tensors
(``"cpu:gloo,cuda:nccl"``), so the plan can travel before anyone knows which device the run
uses. Every collective has a timeout (``SIGHTQL_DDP_TIMEOUT``, default 1,800 s).

Failures: a rank that fails writes ``rank-N.error`` (one line of text) next to the shared rows
and exits; its peers' next collective then fails at once (the connection closes), and they
read that file to say which rank failed and why. torchrun stops the remaining ranks with
SIGTERM, which becomes a :class:`~sightql.errors.DistributedError` here, so rank 0 still marks
the run failed before it exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sightql.errors import DistributedError, SightQLError

ERROR_SUFFIX = ".error"


def distributed_env() -> tuple[int, int, int] | None:
    """(rank, local rank, world size) when launched by torchrun with more than one process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "RANK" not in os.environ:
        return None
    return int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), int(os.environ["WORLD_SIZE"])


def failure_text(exc: BaseException) -> str:
    """What a run's ``error`` column says about ``exc``: a user's mistake as its sentence, a bug with its type."""
    if isinstance(exc, SightQLError):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    return f"{type(exc).__name__}: {exc}"


@dataclass
class Group:
    """This process's place in the torchrun job, and the collectives training needs."""

    rank: int
    local_rank: int
    world_size: int
    backend: str
    timeout_s: float
    shared_dir: Path | None = None  # where rows and rank-N.error files live, once the plan is known
    phase: str = "setup"  # setup (before the plan), training, final (rank 0 evaluates and registers)
    stopping: bool = field(default=False, repr=False)

    @classmethod
    def join(cls, env: tuple[int, int, int], timeout_s: float) -> "Group":
        import torch
        import torch.distributed as dist

        rank, local_rank, world_size = env
        cuda = torch.cuda.is_available()
        if cuda and local_rank < torch.cuda.device_count():
            torch.cuda.set_device(local_rank)
        backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
        group = cls(rank, local_rank, world_size, backend, timeout_s)
        signal.signal(signal.SIGTERM, group._on_sigterm)
        return group

    @property
    def is_lead(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        import torch.distributed as dist

        if not self.stopping:  # a failing process keeps ignoring SIGTERM and exits with its own status
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if dist.is_initialized():
            dist.destroy_process_group()

    # ---- devices and models ----------------------------------------------------
    def device(self, resolved: str) -> str:
        """``cuda`` becomes this process's own GPU, ``cuda:<local rank>``; ``cpu`` stays."""
        if not resolved.startswith("cuda"):
            return resolved
        import torch

        count = torch.cuda.device_count()
        if self.local_rank >= count:
            raise SightQLError(
                f"rank {self.rank} has local rank {self.local_rank} but this node has {count} GPU(s); "
                f"start at most {count} process(es) per node with --nproc_per_node"
            )
        return f"cuda:{self.local_rank}"

    def wrap(self, module: Any, device: str) -> Any:
        """DistributedDataParallel over ``module``; it starts from rank 0's parameters and buffers."""
        from torch.nn.parallel import DistributedDataParallel

        ids = [int(device.split(":")[1])] if device.startswith("cuda:") else None
        return DistributedDataParallel(module, device_ids=ids)

    def sync_buffers(self, module: Any) -> None:
        """Rank 0's BatchNorm running statistics everywhere, so every rank evaluates the model rank 0 saves."""
        import torch.distributed as dist

        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)

    def uneven_batches(self, model: Any) -> Any:
        """A context in which ranks may run different numbers of batches (DDP's Join)."""
        from torch.distributed.algorithms.join import Join

        return Join([model])

    # ---- numbers ---------------------------------------------------------------
    def sum(self, values: list[float]) -> list[float]:
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()

    def maximum(self, value: float) -> float:
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return float(tensor.item())

    def gather(self, value: int) -> list[int]:
        """``value`` from every rank, in rank order."""
        import torch
        import torch.distributed as dist

        parts = [torch.zeros(1, dtype=torch.int64) for _ in range(self.world_size)]
        dist.all_gather(parts, torch.tensor([value], dtype=torch.int64))
        return [int(p.item()) for p in parts]

    # ---- messages --------------------------------------------------------------
    def broadcast_json(self, payload: dict[str, Any] | None) -> dict[str, Any]:
        """Rank 0 sends ``payload`` (JSON as a uint8 tensor, length first); every rank returns it."""
        import torch
        import torch.distributed as dist

        if self.is_lead:
            assert payload is not None
            data = json.dumps(payload, sort_keys=True).encode()
            size = torch.tensor([len(data)], dtype=torch.int64)
        else:
            size = torch.zeros(1, dtype=torch.int64)
        dist.broadcast(size, src=0)
        if self.is_lead:
            buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        else:
            buffer = torch.zeros(int(size.item()), dtype=torch.uint8)
        dist.broadcast(buffer, src=0)
        return payload if self.is_lead else json.loads(bytes(buffer.tolist()).decode())

    def share_plan(self, plan: dict[str, Any]) -> None:
        self.shared_dir = Path(plan["shared_dir"])
        self.broadcast_json(plan)
        self.phase = "training"

    def receive_plan(self) -> dict[str, Any]:
        plan = self.broadcast_json(None)
        if "error" in plan:
            raise DistributedError(f"rank 0 failed before training: {plan['error']}")
        self.shared_dir = Path(plan["shared_dir"])
        self.phase = "training"
        return plan

    def send_outcome(self, outcome: dict[str, Any]) -> None:
        """Rank 0, after the run is completed: workers waiting in :meth:`receive_outcome` return."""
        with contextlib.suppress(Exception):  # a worker that left after training does not undo a completed run
            self.broadcast_json(outcome)

    def receive_outcome(self) -> dict[str, Any]:
        self.phase = "final"
        outcome = self.broadcast_json(None)
        if "error" in outcome:
            raise DistributedError(f"rank 0 failed after training: {outcome['error']}")
        return outcome

    # ---- failures --------------------------------------------------------------
    def stop_listening(self) -> None:
        """This process is failing: further SIGTERMs from torchrun are ignored, so the run is marked
        and the process exits with its own status (not -15 halfway through)."""
        self.stopping = True
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        if self.stopping:
            return
        self.stop_listening()
        raise DistributedError(self._peer_story() or f"rank {self.rank} was stopped by the launcher (SIGTERM)")

    def _peer_story(self) -> str | None:
        if self.shared_dir is None or not self.shared_dir.is_dir():
            return None
        stories = []
        for path in sorted(self.shared_dir.glob(f"rank-*{ERROR_SUFFIX}")):
            if path.name != f"rank-{self.rank}{ERROR_SUFFIX}":
                stories.append(f"{path.stem.replace('-', ' ')} failed: {path.read_text().strip()}")
        return "; ".join(stories) or None

    def explain(self, exc: BaseException) -> DistributedError | None:
        """When ``exc`` is the echo of another rank's failure (a closed connection, SIGTERM), the error to
        report instead, naming that rank and its own message; None when this rank's failure is its own."""
        self.stop_listening()
        if isinstance(exc, DistributedError):
            return exc
        if isinstance(exc, (SightQLError, KeyboardInterrupt)):
            return None
        story = self._peer_story()
        return DistributedError(story) if story else None

    def failed(self, exc: BaseException) -> None:
        """Tell the other ranks this one failed, by the means they are listening on in this phase."""
        self.stop_listening()
        if isinstance(exc, DistributedError) and self.phase != "setup":
            return  # an echo of another rank's failure, already told
        text = failure_text(exc)
        if self.is_lead and self.phase in ("setup", "final"):  # the others wait for the plan, or the outcome
            with contextlib.suppress(Exception):
                self.broadcast_json({"error": text})
        if self.shared_dir is not None and self.shared_dir.is_dir():
            (self.shared_dir / f"rank-{self.rank}{ERROR_SUFFIX}").write_text(text + "\n")
