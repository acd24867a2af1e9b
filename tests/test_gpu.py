"""The CUDA path (skipped without a GPU): interpolation between a model on the GPU and a checkpoint
loaded on the CPU, the case that crashed every CUDA run of the Re-Basin study."""

import pytest
import torch

from weightlab.rebasin.models import ConvNet
from weightlab.rebasin.paths import interpolate_state

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible; run benchmarks/gpu_check.sh on a GPU machine")]


def test_interpolation_takes_the_other_state_from_the_cpu():
    torch.manual_seed(0)
    on_gpu = {k: v.cuda() for k, v in ConvNet(width=4, hidden=8).state_dict().items()}
    on_cpu = ConvNet(width=4, hidden=8).state_dict()
    middle = interpolate_state(on_gpu, on_cpu, 0.5)
    name = "convs.0.weight" if "convs.0.weight" in on_cpu else next(k for k, v in on_cpu.items() if v.is_floating_point())
    assert middle[name].is_cuda
    torch.testing.assert_close(middle[name].cpu(), (on_gpu[name].cpu() + on_cpu[name]) / 2)
