"""Test job: rank 0 logs one TensorBoard scalar named after its job, where the HF Trainer of a training run of
the project would (`$ORCH_OUTPUT_ROOT/out/runs/<time>_<host>/`)."""

import os
import socket
import time

from torch.utils.tensorboard import SummaryWriter

if os.environ["RANK"] == "0":
    run = f"{time.strftime('%b%d_%H-%M-%S')}_{socket.gethostname()}"
    with SummaryWriter(os.path.join(os.environ["ORCH_OUTPUT_ROOT"], "out", "runs", run)) as writer:
        writer.add_scalar(f"job/{os.environ['ORCH_JOB_ID']}", 1.0, 0)
